#include "platform/InventorySanitizer.h"

#include <gtest/gtest.h>

#include "InventoryTestSupport.h"

namespace tether::platform {
namespace {

TEST(CleanTextTest, TrimsReplacesAndCuts) {
  EXPECT_EQ(clean_text("  Samsung SSD\n", 128), "Samsung SSD");
  EXPECT_EQ(clean_text("a\tb\nc\rd", 128), "a b c d");
  EXPECT_EQ(clean_text(std::string("a\0b\x1b\x7f", 5), 128), "a?b??");
  EXPECT_EQ(clean_text("abcdef", 3), "abc");
  EXPECT_EQ(clean_text("", 3), "");
  EXPECT_EQ(clean_text("\n\n\t ", 3), "");
  EXPECT_EQ(clean_text("ab   cd", 4), "ab") << "no trailing space after a cut";
  // UTF-8: valid characters stay; a cut never splits one.
  EXPECT_EQ(clean_text("caf\xc3\xa9", 128), "caf\xc3\xa9");
  EXPECT_EQ(clean_text("caf\xc3\xa9", 4), "caf");
  EXPECT_EQ(clean_text("\xe2\x82\xac\xe2\x82\xac", 5), "\xe2\x82\xac");
  EXPECT_EQ(clean_text("\xf0\x9f\x98\x80!", 4), "\xf0\x9f\x98\x80");
  // Invalid UTF-8: stray continuation, overlong, surrogate, beyond U+10FFFF, truncated.
  EXPECT_EQ(clean_text("a\x80z", 128), "a?z");
  EXPECT_EQ(clean_text("\xc0\xaf", 128), "??");
  EXPECT_EQ(clean_text("\xed\xa0\x80", 128), "???");
  EXPECT_EQ(clean_text("\xf4\x90\x80\x80", 128), "????");
  EXPECT_EQ(clean_text("x\xe2\x82", 128), "x??");
  // C1 controls (U+0080..U+009F) are control characters too.
  EXPECT_EQ(clean_text("a\xc2\x85z", 128), "a?z");
  EXPECT_EQ(clean_text("a\xc2\xa0z", 128), "a\xc2\xa0z");
  // A megabyte costs no more than the kept prefix.
  EXPECT_EQ(clean_text(std::string(1 << 20, 'q'), 10), std::string(10, 'q'));
}

TEST(SanitizeInventoryTest, InvalidValuesBecomeValid) {
  protocol::Inventory inv;
  inv.cpu_count = -5;
  inv.memory_kb = std::numeric_limits<std::int64_t>::max();
  inv.nics.push_back({.name = std::string(40, 'n'),
                      .mac = "ff:ff:ff:ff:ff:ff",
                      .speed_mbps = -1,
                      .addresses = {"", "10.0.0.1/8", std::string(100, '1')},
                      .wol_supported = "gXgp",
                      .wol_enabled = "zz"});
  inv.nics.push_back({.name = "eth1", .mac = "AA-BB-CC-DD-EE-F0"});
  inv.usb_devices.push_back({.vendor_id = "", .product_id = "0001"});
  inv.usb_devices.push_back({.vendor_id = "12 4", .product_id = "0001"});
  inv.usb_devices.push_back({.vendor_id = "1234", .product_id = "0001"});
  inv.block_devices.push_back({.name = "sda", .size_bytes = -1});
  std::vector<std::string> warnings;
  sanitize_inventory(inv, warnings);
  EXPECT_EQ(inv.cpu_count, 0);
  EXPECT_EQ(inv.memory_kb, InventoryLimits::kBytes);
  EXPECT_EQ(inv.nics[0].name.size(), 32U);
  EXPECT_EQ(inv.nics[0].mac, "");
  EXPECT_FALSE(inv.nics[0].speed_mbps);
  EXPECT_EQ(inv.nics[0].addresses, (std::vector<std::string>{"10.0.0.1/8", std::string(64, '1')}));
  EXPECT_EQ(inv.nics[0].wol_supported, "pg");
  EXPECT_EQ(inv.nics[0].wol_enabled, "");
  EXPECT_EQ(inv.nics[1].mac, "aa:bb:cc:dd:ee:f0");
  ASSERT_EQ(inv.usb_devices.size(), 1U);
  EXPECT_EQ(inv.block_devices[0].size_bytes, 0);
  ASSERT_EQ(warnings.size(), 1U);
  EXPECT_NE(warnings[0].find("2 USB devices left out"), std::string::npos) << warnings[0];
  testing::expect_round_trip(inv);
}

}  // namespace
}  // namespace tether::platform
