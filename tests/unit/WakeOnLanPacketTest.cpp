#include "protocol/WakeOnLanPacket.h"

#include <gtest/gtest.h>

namespace tether::protocol {
namespace {

TEST(WakeOnLanPacketTest, LayoutIsSixFfThenSixteenMacs) {
  const auto mac = *MacAddress::parse("52:54:00:12:34:56");
  auto packet = build_magic_packet(mac);
  ASSERT_TRUE(packet.ok());
  ASSERT_EQ(packet->size(), 102u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ((*packet)[i], 0xff);
  for (int rep = 0; rep < 16; ++rep) {
    for (int i = 0; i < 6; ++i) EXPECT_EQ((*packet)[6 + rep * 6 + i], mac.bytes()[i]);
  }
  EXPECT_TRUE(is_magic_packet_for(*packet, mac));
  EXPECT_FALSE(is_magic_packet_for(*packet, *MacAddress::parse("52:54:00:12:34:57")));
}

TEST(WakeOnLanPacketTest, SecureOnPasswordOfFourOrSixBytes) {
  const auto mac = *MacAddress::parse("52:54:00:12:34:56");
  const std::vector<std::uint8_t> four = {1, 2, 3, 4};
  const std::vector<std::uint8_t> six = {1, 2, 3, 4, 5, 6};
  auto p4 = build_magic_packet(mac, four);
  auto p6 = build_magic_packet(mac, six);
  ASSERT_TRUE(p4.ok());
  ASSERT_TRUE(p6.ok());
  EXPECT_EQ(p4->size(), 106u);
  EXPECT_EQ(p6->size(), 108u);
  EXPECT_TRUE(std::equal(six.begin(), six.end(), p6->end() - 6));
  EXPECT_TRUE(is_magic_packet_for(*p6, mac));
  const std::vector<std::uint8_t> five = {1, 2, 3, 4, 5};
  auto bad = build_magic_packet(mac, five);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::kBadValue);
}

TEST(WakeOnLanPacketTest, RecognizerRejectsDamagedPackets) {
  const auto mac = *MacAddress::parse("52:54:00:12:34:56");
  auto packet = *build_magic_packet(mac);
  auto damaged = packet;
  damaged[0] = 0xfe;
  EXPECT_FALSE(is_magic_packet_for(damaged, mac));
  damaged = packet;
  damaged[101] ^= 1;
  EXPECT_FALSE(is_magic_packet_for(damaged, mac));
  damaged = packet;
  damaged.pop_back();
  EXPECT_FALSE(is_magic_packet_for(damaged, mac));
}

}  // namespace
}  // namespace tether::protocol
