#include "platform/EthtoolClient.h"

#include <gtest/gtest.h>
#include <linux/ethtool.h>

#include "NetnsScope.h"

namespace tether::platform {
namespace {

TEST(EthtoolClientTest, LettersAndMasks) {
  EXPECT_EQ(wake_on_lan_letters(0), "");
  EXPECT_EQ(wake_on_lan_letters(WAKE_MAGIC), "g");
  EXPECT_EQ(wake_on_lan_letters(WAKE_PHY | WAKE_UCAST | WAKE_MCAST | WAKE_BCAST | WAKE_MAGIC),
            "pumbg");
  EXPECT_EQ(wake_on_lan_letters(0xffffffffU), "pumbagsf");
  EXPECT_EQ(wake_on_lan_mask("g").value(), std::uint32_t{WAKE_MAGIC});
  EXPECT_EQ(wake_on_lan_mask("gp").value(), std::uint32_t{WAKE_MAGIC | WAKE_PHY});
  EXPECT_EQ(wake_on_lan_mask("d").value(), 0U);
  for (std::string_view bad : {"", "x", "gd", "dg", "G", "g g"}) {
    auto m = wake_on_lan_mask(bad);
    ASSERT_FALSE(m.ok()) << bad;
    EXPECT_EQ(m.error().code, Errc::kInvalidArgument) << bad;
  }
  EXPECT_NE(wake_on_lan_mask("gx").error().message.find("'x'"), std::string::npos);
}

TEST(EthtoolClientTest, BadNamesAndMissingInterfacesAreCleanErrors) {
  auto client = EthtoolClient::open();
  ASSERT_TRUE(client.ok()) << client.error().message;
  for (const std::string bad : {"", "a/b", "0123456789abcdef", "has space", ".."}) {
    auto r = client->wake_on_lan(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << bad;
  }
  auto missing = client->wake_on_lan("tether-none0");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::kNotFound);
  EXPECT_EQ(missing.error().message, "no network interface tether-none0");
  auto set = set_wake_on_lan("tether-none0", "g");
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.error().code, Errc::kNotFound);
  auto bad_modes = set_wake_on_lan("lo", "q");
  ASSERT_FALSE(bad_modes.ok());
  EXPECT_EQ(bad_modes.error().code, Errc::kInvalidArgument);
}

TEST(EthtoolClientTest, VethHasNoWakeOnLanAndSettingItIsACleanError) {
  testing::NetnsScope ns;
  if (!ns.ok()) GTEST_SKIP() << "skipped: " << ns.reason();
  ns.ip({"link", "add", "tva", "type", "veth", "peer", "name", "tvb"});
  auto client = EthtoolClient::open();  // opened inside the namespace: it sees tva
  ASSERT_TRUE(client.ok());
  auto modes = client->wake_on_lan("tva");
  ASSERT_TRUE(modes.ok()) << modes.error().message;
  EXPECT_EQ(*modes, WakeOnLanModes{});
  EXPECT_EQ(client->driver_name("tva").value_or("?"), "veth");

  for (std::string_view m : {"g", "d", "pumbg"}) {
    const Status st = set_wake_on_lan("tva", m);
    ASSERT_FALSE(st.ok()) << m;
    EXPECT_EQ(st.error().code, Errc::kUnavailable) << m;
    EXPECT_EQ(st.error().message, "tva does not support wake-on-LAN") << m;
  }
}

}  // namespace
}  // namespace tether::platform
