#include "common/Hex.h"

#include <gtest/gtest.h>

namespace tether {
namespace {

TEST(HexTest, RoundTrip) {
  const std::vector<std::uint8_t> bytes = {0x00, 0x01, 0xab, 0xff};
  EXPECT_EQ(hex_encode(bytes), "0001abff");
  EXPECT_EQ(*hex_decode("0001ABff"), bytes);
  EXPECT_TRUE(hex_decode("").ok());
}

TEST(HexTest, Rejects) {
  EXPECT_EQ(hex_decode("abc").error().code, Errc::kBadValue);
  EXPECT_EQ(hex_decode("zz").error().code, Errc::kBadValue);
  EXPECT_TRUE(is_lower_hex("09af"));
  EXPECT_FALSE(is_lower_hex("09AF"));
}

}  // namespace
}  // namespace tether
