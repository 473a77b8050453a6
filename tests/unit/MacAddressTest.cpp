#include "protocol/MacAddress.h"

#include <gtest/gtest.h>

namespace tether::protocol {
namespace {

TEST(MacAddressTest, ParsesTheUsualForms) {
  for (const char* text :
       {"52:54:00:12:34:56", "52-54-00-12-34-56", "525400123456", "52:54:00:AB:cd:EF"}) {
    auto mac = MacAddress::parse(text);
    ASSERT_TRUE(mac.ok()) << text << ": " << mac.error().message;
  }
  EXPECT_EQ(MacAddress::parse("52-54-00-AB-CD-EF")->to_string(), "52:54:00:ab:cd:ef");
}

TEST(MacAddressTest, RejectsMalformed) {
  for (const char* text : {"", "52:54:00:12:34", "52:54:00:12:34:56:78", "52:54-00:12:34:56",
                           "52:54:00:12:34:5g", "5254.0012.3456", "52:54:00:12:34:56 ",
                           " 52:54:00:12:34:56", "52::54:00:12:34:56", "52545400123456"}) {
    auto mac = MacAddress::parse(text);
    ASSERT_FALSE(mac.ok()) << text;
    EXPECT_EQ(mac.error().code, Errc::kBadValue);
  }
}

TEST(MacAddressTest, RejectsAddressesThatNameNoNic) {
  EXPECT_FALSE(MacAddress::parse("00:00:00:00:00:00").ok());
  EXPECT_FALSE(MacAddress::parse("ff:ff:ff:ff:ff:ff").ok());
  EXPECT_FALSE(MacAddress::parse("01:00:5e:00:00:01").ok());  // IPv4 multicast
  EXPECT_FALSE(MacAddress::parse("33:33:00:00:00:01").ok());  // IPv6 multicast
  // Locally administered unicast is a real NIC address (VMs, veth).
  EXPECT_TRUE(MacAddress::parse("02:00:00:00:00:01").ok());
}

TEST(MacAddressTest, ErrorMessageShowsOnlyPrintablePrefix) {
  auto mac = MacAddress::parse(std::string("\x01\x02zz", 4));
  ASSERT_FALSE(mac.ok());
  EXPECT_EQ(mac.error().message.find('\x01'), std::string::npos);
}

}  // namespace
}  // namespace tether::protocol
