#include "platform/DeviceWatcher.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <functional>
#include <iostream>

#include "NetnsScope.h"
#include "TempDir.h"
#include "platform/InventoryCollector.h"
#include "protocol/MacAddress.h"

namespace tether::platform {
namespace {

using std::chrono::milliseconds;
using testing::NetnsScope;

constexpr milliseconds kWait{5000};

// What the watcher reported, and from which source.
struct Seen {
  DeviceChanges all;
  DeviceChanges udev;
  DeviceChanges rtnetlink;
};

// Polls the watcher's fds and processes what arrives until `done(seen)` or the timeout.
// With a zero timeout this drains what is queued now (the kernel queues rtnetlink and uevent
// messages before the command that caused them returns).
Seen watch(
    DeviceWatcher& w, milliseconds timeout,
    const std::function<bool(const Seen&)>& done = [](const Seen&) { return false; }) {
  Seen seen;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(seen)) {
    std::vector<pollfd> fds;
    for (int fd : w.fds()) fds.push_back({fd, POLLIN, 0});
    const auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    const int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<long>(left.count(), 0)));
    if (n <= 0) break;
    for (const auto& p : fds) {
      if ((p.revents & POLLIN) == 0) continue;
      const DeviceChanges c = w.process(p.fd);
      seen.all |= c;
      (p.fd == w.udev_fd() ? seen.udev : seen.rtnetlink) |= c;
    }
  }
  return seen;
}

Seen drain(DeviceWatcher& w) {
  return watch(w, milliseconds{0});
}

bool network(const Seen& s) {
  return s.all.network;
}

DeviceWatcher open_watcher(const DeviceWatcherOptions& options = {}) {
  auto w = DeviceWatcher::open(options);
  EXPECT_TRUE(w.ok()) << (w.ok() ? "" : w.error().message);
  if (!w.ok()) std::abort();
  for (const auto& warning : w->warnings()) std::cout << "watcher warning: " << warning << "\n";
  return std::move(w).value();
}

std::string mac_of(NetnsScope& ns, const std::string& ifname) {
  const auto j = nlohmann::json::parse(ns.ip({"-j", "link", "show", ifname}), nullptr, false);
  if (!j.is_array() || j.empty()) return {};
  return protocol::MacAddress::parse(j[0].value("address", "")).value().to_string();
}

// Creates the veth pair tva/tvb without IPv6 link-local addresses: their duplicate address
// detection finishes a second or so later and would be (correctly) reported as news in the
// middle of a check that expects none.
void add_veth_pair(NetnsScope& ns) {
  ns.ip({"link", "add", "tva", "type", "veth", "peer", "name", "tvb"});
  ns.ip({"link", "set", "tva", "addrgenmode", "none"});
  ns.ip({"link", "set", "tvb", "addrgenmode", "none"});
}

// Waits until both ends' operstate is "up", then drains. The kernel applies carrier changes
// later, in its linkwatch work, and announces them there; once sysfs shows the result, that
// announcement is queued, so after the drain nothing about these links is on its way. The
// waiting is on the watcher's fds, woken by the kernel's own messages.
bool settle_up(NetnsScope& ns, DeviceWatcher& w) {
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  const auto operstate = [&](const char* link) {
    return testing::slurp(ns.sys_root() + "/class/net/" + link + "/operstate");
  };
  while (operstate("tva") != "up\n" || operstate("tvb") != "up\n") {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    (void)watch(w, milliseconds{100}, network);
  }
  (void)drain(w);
  return true;
}

const protocol::NicInfo* find_nic(const protocol::Inventory& inv, const std::string& name) {
  for (const auto& n : inv.nics) {
    if (n.name == name) return &n;
  }
  return nullptr;
}

#define ENTER_NETNS(ns) \
  NetnsScope ns;        \
  if (!(ns).ok()) GTEST_SKIP() << "skipped: " << (ns).reason()

TEST(DeviceWatcherTest, VethPairIsReportedAndListedWithItsMacs) {
  ENTER_NETNS(ns);
  DeviceWatcher w = open_watcher();
  ASSERT_GE(w.rtnetlink_fd(), 0);
  const bool have_udev = w.udev_fd() >= 0;
  EXPECT_EQ(w.fds().size(), have_udev ? 2U : 1U);
  (void)drain(w);

  add_veth_pair(ns);
  Seen seen = watch(w, kWait, [&](const Seen& s) {
    return s.all.network && s.all.inventory && (!have_udev || s.udev.inventory);
  });
  EXPECT_TRUE(seen.all.network);
  EXPECT_TRUE(seen.all.inventory);
  EXPECT_TRUE(seen.rtnetlink.network) << "new links come through rtnetlink";
  if (have_udev) {
    EXPECT_TRUE(seen.udev.inventory) << "the kernel's uevent for the new devices";
    EXPECT_FALSE(seen.udev.network) << "uevents alone are not network changes";
  }

  InventoryCollector collector(ns.sys_root(), "/proc");
  auto report = collector.collect();
  for (const auto& warning : report.warnings) std::cout << "inventory warning: " << warning << "\n";
  const auto* a = find_nic(report.inventory, "tva");
  const auto* b = find_nic(report.inventory, "tvb");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->mac, mac_of(ns, "tva"));
  EXPECT_EQ(b->mac, mac_of(ns, "tvb"));
  EXPECT_FALSE(a->mac.empty());
  EXPECT_EQ(a->driver, "veth") << "from ethtool: a veth has no device/driver link";
  EXPECT_FALSE(a->link_up);
  EXPECT_EQ(a->wol_supported, "") << "veth cannot do wake-on-LAN, and that is no warning";
  EXPECT_EQ(find_nic(report.inventory, "eth0"), nullptr) << "the host's NICs are not in here";

  // Up: one end alone (admin up), then the other (carrier on both).
  ns.ip({"link", "set", "tva", "up"});
  EXPECT_TRUE(watch(w, kWait, network).all.network) << "tva up";
  ns.ip({"link", "set", "tvb", "up"});
  EXPECT_TRUE(watch(w, kWait, network).all.network) << "tvb up";
  ASSERT_TRUE(settle_up(ns, w)) << "the veth pair never came up";

  // Not news: an MTU change repeats the link state.
  ns.ip({"link", "set", "tva", "mtu", "1400"});
  seen = drain(w);
  EXPECT_FALSE(seen.all.network) << "an MTU change is not a network change";

  ns.ip({"addr", "add", "10.9.0.1/24", "dev", "tva"});
  seen = watch(w, kWait, [](const Seen& s) { return s.all.network && s.all.inventory; });
  EXPECT_TRUE(seen.rtnetlink.network) << "address added";
  EXPECT_TRUE(seen.rtnetlink.inventory) << "address added";

  report = collector.collect();
  a = find_nic(report.inventory, "tva");
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(a->link_up);
  EXPECT_EQ(a->speed_mbps, std::optional<std::int64_t>(10000)) << "veth reports 10 Gb/s";
  EXPECT_NE(std::find(a->addresses.begin(), a->addresses.end(), "10.9.0.1/24"), a->addresses.end());

  ns.ip({"addr", "del", "10.9.0.1/24", "dev", "tva"});
  EXPECT_TRUE(watch(w, kWait, network).rtnetlink.network) << "address removed";

  ns.ip({"link", "set", "tvb", "down"});
  EXPECT_TRUE(watch(w, kWait, network).rtnetlink.network) << "tvb down (tva loses carrier)";

  ns.ip({"link", "del", "tva"});
  seen = watch(w, kWait,
               [&](const Seen& s) { return s.all.network && (!have_udev || s.udev.inventory); });
  EXPECT_TRUE(seen.all.network) << "links removed";
  EXPECT_TRUE(seen.all.inventory) << "links removed";
}

TEST(DeviceWatcherTest, DefaultRouteChangesAreReportedOtherRoutesAreNot) {
  ENTER_NETNS(ns);
  DeviceWatcher setup = open_watcher({.udev = false});
  add_veth_pair(ns);
  ns.ip({"link", "set", "tva", "up"});
  ns.ip({"link", "set", "tvb", "up"});
  ns.ip({"addr", "add", "10.9.0.1/24", "dev", "tva"});
  ns.ip({"-6", "addr", "add", "fd00:9::1/64", "dev", "tva", "nodad"});
  ASSERT_TRUE(settle_up(ns, setup)) << "the veth pair never came up";
  // A watcher opened now learns the links, addresses and routes as they are: none is news.
  DeviceWatcher w = open_watcher({.udev = false});
  EXPECT_EQ(drain(w).all, DeviceChanges{}) << "the state at open is not news";

  ns.ip({"route", "add", "10.20.0.0/16", "via", "10.9.0.2"});
  EXPECT_FALSE(drain(w).all.network) << "a route that is not a default route";

  ns.ip({"route", "add", "default", "via", "10.9.0.2"});
  Seen seen = watch(w, kWait, network);
  EXPECT_TRUE(seen.all.network) << "IPv4 default route added";
  EXPECT_FALSE(seen.all.inventory) << "routes are not inventory";

  ns.ip({"route", "replace", "default", "via", "10.9.0.3"});
  EXPECT_TRUE(watch(w, kWait, network).all.network) << "IPv4 default route changed";

  ns.ip({"route", "del", "default"});
  EXPECT_TRUE(watch(w, kWait, network).all.network) << "IPv4 default route removed";

  ns.ip({"-6", "route", "add", "default", "via", "fd00:9::2", "dev", "tva"});
  EXPECT_TRUE(watch(w, kWait, network).all.network) << "IPv6 default route added";

  ns.ip({"-6", "route", "add", "fd00:20::/48", "via", "fd00:9::2"});
  EXPECT_FALSE(drain(w).all.network) << "an IPv6 route that is not a default route";

  ns.ip({"-6", "route", "del", "default"});
  EXPECT_TRUE(watch(w, kWait, network).all.network) << "IPv6 default route removed";
}

TEST(DeviceWatcherTest, RtnetlinkAloneWorks) {
  ENTER_NETNS(ns);
  DeviceWatcher w = open_watcher({.udev = false});
  EXPECT_EQ(w.udev_fd(), -1);
  ASSERT_EQ(w.fds().size(), 1U);
  EXPECT_TRUE(w.warnings().empty());
  ns.ip({"link", "add", "tva", "type", "veth", "peer", "name", "tvb"});
  const Seen seen = watch(w, kWait, [](const Seen& s) { return s.all.network && s.all.inventory; });
  EXPECT_TRUE(seen.all.network);
  EXPECT_TRUE(seen.all.inventory);
}

TEST(DeviceWatcherTest, UdevAloneWorks) {
  ENTER_NETNS(ns);
  auto opened = DeviceWatcher::open({.rtnetlink = false});
  if (!opened.ok()) GTEST_SKIP() << "skipped: no uevent socket here: " << opened.error().message;
  DeviceWatcher w = std::move(opened).value();
  EXPECT_EQ(w.rtnetlink_fd(), -1);
  ASSERT_EQ(w.fds().size(), 1U);
  (void)drain(w);
  ns.ip({"link", "add", "tva", "type", "veth", "peer", "name", "tvb"});
  const Seen seen = watch(w, kWait, [](const Seen& s) { return s.all.inventory; });
  EXPECT_TRUE(seen.udev.inventory);
  EXPECT_FALSE(seen.all.network);
}

TEST(DeviceWatcherTest, NoSourceIsAnError) {
  auto w = DeviceWatcher::open({.udev = false, .rtnetlink = false});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, Errc::kUnavailable);
}

TEST(DeviceWatcherTest, ForeignFdsGiveNoChanges) {
  DeviceWatcher w = open_watcher();
  EXPECT_EQ(w.process(-1), DeviceChanges{});
  EXPECT_EQ(w.process(0), DeviceChanges{});
  EXPECT_EQ(w.process(12345), DeviceChanges{});
}

TEST(DeviceWatcherTest, AFloodIsProcessedInBoundedSteps) {
  ENTER_NETNS(ns);
  add_veth_pair(ns);
  DeviceWatcher w = open_watcher({.udev = false});
  (void)drain(w);
  // 500 addresses: at least 500 datagrams (each also brings a local route), far more than
  // one call may take.
  std::string batch;
  for (int i = 0; i < 500; ++i) {
    batch += "addr add 10.50." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) +
             "/32 dev tva\n";
  }
  testing::TempDir dir;
  ns.ip({"-batch", dir.write("batch", batch)});
  pollfd p{w.rtnetlink_fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 0), 1);
  EXPECT_TRUE(w.process(w.rtnetlink_fd()).network);
  p.revents = 0;
  EXPECT_EQ(::poll(&p, 1, 0), 1) << "one call stops after kMaxMessagesPerCall datagrams";
  int calls = 1;
  while (::poll(&p, 1, 0) == 1 && calls < 1000) {
    (void)w.process(w.rtnetlink_fd());
    ++calls;
  }
  EXPECT_GT(calls, 500 / DeviceWatcher::kMaxMessagesPerCall);
  EXPECT_LT(calls, 1000) << "the flood drains";
  EXPECT_EQ(drain(w).all, DeviceChanges{});
}

}  // namespace
}  // namespace tether::platform
