// The pure rules behind the server's LAN features: subnets and scan ranges, pending
// registrations and token decisions, wake-on-LAN planning and pacing.
#include <gtest/gtest.h>

#include "server/Ipv4Subnet.h"
#include "server/RegistrationPolicy.h"
#include "server/WakeService.h"

namespace tether::server {
namespace {

using protocol::TokenStatus;
using namespace std::chrono_literals;

Ipv4Address ip(const char* text) {
  return parse_ipv4(text).value();
}

TEST(Ipv4SubnetTest, ParsesInterfaceAddressesAndRanges) {
  auto s = Ipv4Subnet::parse("10.1.2.3/24");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->to_string(), "10.1.2.0/24");
  EXPECT_TRUE(s->contains(ip("10.1.2.200")));
  EXPECT_FALSE(s->contains(ip("10.1.3.1")));
  EXPECT_EQ(ipv4_to_string(s->broadcast()), "10.1.2.255");
  auto host = Ipv4Subnet::parse("192.168.0.7");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->prefix, 32);
  EXPECT_EQ(ipv4_to_string(Ipv4Subnet::parse("172.16.5.1/12")->broadcast()), "172.31.255.255");
  EXPECT_TRUE(Ipv4Subnet::parse("0.0.0.0/0")->contains(ip("8.8.8.8")));
}

TEST(Ipv4SubnetTest, RefusesMalformedText) {
  for (const char* bad : {"", "10.1.2/24", "10.1.2.3/33", "10.1.2.3/", "10.1.2.3/2x",
                          "10.1.2.3/024", "fe80::1/64", "10.1.2.256/24", "host/24"}) {
    EXPECT_FALSE(Ipv4Subnet::parse(bad).ok()) << bad;
  }
}

TEST(Ipv4SubnetTest, PeerAddressForms) {
  EXPECT_EQ(ipv4_of_peer("10.0.0.2"), ip("10.0.0.2"));
  EXPECT_EQ(ipv4_of_peer("::ffff:10.0.0.2"), ip("10.0.0.2"));
  EXPECT_EQ(ipv4_of_peer("10.0.0.2:4433"), ip("10.0.0.2"));
  EXPECT_FALSE(ipv4_of_peer("fe80::1").has_value());
  EXPECT_FALSE(ipv4_of_peer("").has_value());
}

TEST(Ipv4SubnetTest, ScanHostsSkipsNetworkAndBroadcastAndCapsTheRange) {
  auto hosts = scan_hosts(*Ipv4Subnet::parse("10.9.8.0/24"));
  ASSERT_TRUE(hosts.ok());
  ASSERT_EQ(hosts->size(), 254u);
  EXPECT_EQ(ipv4_to_string(hosts->front()), "10.9.8.1");
  EXPECT_EQ(ipv4_to_string(hosts->back()), "10.9.8.254");
  EXPECT_EQ(scan_hosts(*Ipv4Subnet::parse("10.9.8.4/31"))->size(), 2u);
  EXPECT_EQ(scan_hosts(*Ipv4Subnet::parse("10.9.8.4/32"))->size(), 1u);
  EXPECT_EQ(scan_hosts(*Ipv4Subnet::parse("10.9.0.0/16"))->size(), 65534u);
  auto wide = scan_hosts(*Ipv4Subnet::parse("10.8.0.0/15"));
  ASSERT_FALSE(wide.ok());
  EXPECT_EQ(wide.error().code, Errc::kTooLarge);
}

TEST(Ipv4SubnetTest, InventorySubnetsSkipLoopbackAndJunk) {
  const std::string inventory = R"({"nics":[
    {"name":"lo","mac":"","addresses":["127.0.0.1/8","::1/128"]},
    {"name":"eth0","mac":"52:54:00:12:34:56","addresses":["10.1.2.3/24","fe80::1/64","junk",
     "169.254.3.3/16"]},
    {"name":"eth1","mac":"52:54:00:12:34:57","addresses":[42, "192.168.9.9/23"]}]})";
  const auto subnets = inventory_subnets(inventory);
  ASSERT_EQ(subnets.size(), 2u);
  EXPECT_EQ(subnets[0].subnet.to_string(), "10.1.2.0/24");
  EXPECT_EQ(ipv4_to_string(subnets[0].address), "10.1.2.3");
  EXPECT_EQ(subnets[0].mac, "52:54:00:12:34:56");
  EXPECT_EQ(subnets[1].subnet.to_string(), "192.168.8.0/23");
  EXPECT_TRUE(inventory_subnets("not json").empty());
  EXPECT_TRUE(inventory_subnets("").empty());
  EXPECT_EQ(inventory_macs(inventory).size(), 2u);
}

TEST(PendingRegistrationsTest, MatchesByAddressOrMacOnceAndExpires) {
  PendingRegistrations pending;
  const auto now = PendingRegistrations::Clock::now();
  pending.add("10.0.0.5", "52:54:00:00:00:05", now + 10min);
  pending.add("10.0.0.6", "52:54:00:00:00:06", now + 10min);
  EXPECT_FALSE(pending.take("10.0.0.7", "52:54:00:00:00:07", now));
  EXPECT_TRUE(pending.take("10.0.0.5", "", now));
  EXPECT_FALSE(pending.take("10.0.0.5", "", now)) << "single use";
  EXPECT_TRUE(pending.take("10.0.9.9", "52:54:00:00:00:06", now)) << "by MAC from elsewhere";
  pending.add("10.0.0.8", "", now + 1s);
  EXPECT_FALSE(pending.take("10.0.0.8", "", now + 2s)) << "expired";
  EXPECT_EQ(pending.size(), 0u);
}

TEST(PendingRegistrationsTest, BoundedAndReplacedPerAddress) {
  PendingRegistrations pending(2);
  const auto now = PendingRegistrations::Clock::now();
  pending.add("10.0.0.1", "", now + 1min);
  pending.add("10.0.0.1", "", now + 2min);
  EXPECT_EQ(pending.size(), 1u);
  pending.add("10.0.0.2", "", now + 3min);
  pending.add("10.0.0.3", "", now + 4min);
  EXPECT_EQ(pending.size(), 2u);
  EXPECT_FALSE(pending.take("10.0.0.1", "", now)) << "the oldest went first";
  EXPECT_TRUE(pending.take("10.0.0.3", "", now));
}

TEST(TokenDecisionTest, FollowsTheProtocolRules) {
  TokenRequestFacts f;
  f.fingerprint_matches = true;
  EXPECT_EQ(decide_token(f), TokenStatus::kDisabled) << "nothing pending, auto off";
  f.pending = true;
  EXPECT_EQ(decide_token(f), TokenStatus::kIssued);
  f.rate_limited = true;
  EXPECT_EQ(decide_token(f), TokenStatus::kRefused) << "the limit comes first";

  TokenRequestFacts other;
  other.pending = true;
  other.auto_registration = true;
  EXPECT_EQ(decide_token(other), TokenStatus::kWrongServer) << "another CA's fingerprint";

  TokenRequestFacts autoreg;
  autoreg.fingerprint_zero = true;
  EXPECT_EQ(decide_token(autoreg), TokenStatus::kDisabled) << "auto-registration is off";
  autoreg.auto_registration = true;
  EXPECT_EQ(decide_token(autoreg), TokenStatus::kIssued);

  TokenRequestFacts named;
  named.fingerprint_matches = true;
  named.auto_registration = true;
  EXPECT_EQ(decide_token(named), TokenStatus::kDisabled)
      << "auto-registration is for devices that name no CA; a named one needs a scan";
}

DeviceRecord device(const std::string& id, const std::string& inventory,
                    std::vector<std::string> macs = {}, std::string address = "") {
  DeviceRecord d;
  d.id = id;
  d.hostname = "host-" + id;
  d.inventory_json = inventory;
  d.macs = std::move(macs);
  d.address = std::move(address);
  return d;
}

TEST(WakePlanTest, ServerTargetsAndRelayInTheSameSubnet) {
  const auto target = device(
      "t", R"({"nics":[{"name":"eth0","mac":"52:54:00:aa:bb:01","addresses":["10.1.2.3/24"]}]})",
      {"52:54:00:aa:bb:01"}, "::ffff:10.1.2.3");
  const auto peer_far = device("far", R"({"nics":[{"name":"eth0","addresses":["10.9.9.9/24"]}]})");
  const auto peer_near =
      device("near", R"({"nics":[{"name":"eth0","addresses":["10.1.2.50/24"]}]})");
  const auto plan = plan_wake(target, {target, peer_far, peer_near});
  EXPECT_EQ(plan.refusal, "");
  EXPECT_EQ(plan.macs, std::vector<std::string>{"52:54:00:aa:bb:01"});
  ASSERT_EQ(plan.server_targets.size(), 2u);
  EXPECT_EQ(ipv4_to_string(plan.server_targets[0]), "10.1.2.3");
  EXPECT_EQ(ipv4_to_string(plan.server_targets[1]), "10.1.2.255");
  ASSERT_EQ(plan.relays.size(), 1u);
  EXPECT_EQ(plan.relays[0].device_id, "near");
  EXPECT_TRUE(plan.no_relay.empty());
}

TEST(WakePlanTest, SaysWhyNothingOrLessCanBeSent) {
  const auto lonely = device(
      "t", R"({"nics":[{"name":"eth0","mac":"52:54:00:aa:bb:01","addresses":["10.1.2.3/24"]}]})",
      {}, "10.7.7.7");
  const auto plan = plan_wake(lonely, {});
  EXPECT_EQ(plan.refusal, "");
  ASSERT_EQ(plan.no_relay.size(), 1u);
  EXPECT_EQ(plan.no_relay[0], "no agent online in 10.1.2.0/24");
  ASSERT_EQ(plan.server_targets.size(), 1u) << "the address outside known subnets is skipped";
  EXPECT_EQ(ipv4_to_string(plan.server_targets[0]), "10.1.2.255");
  ASSERT_FALSE(plan.problems.empty());
  EXPECT_NE(plan.problems[0].find("outside the device's known subnets"), std::string::npos);

  const auto bad_mac = device("b", R"({"nics":[{"name":"eth0","mac":"ff:ff:ff:ff:ff:ff",
      "addresses":["10.1.2.3/24"]}]})",
                              {"not-a-mac"});
  const auto refused = plan_wake(bad_mac, {});
  EXPECT_EQ(refused.refusal, "no valid MAC address known for this device");
  EXPECT_EQ(refused.problems.size(), 2u);

  const auto no_subnet = device("n", "", {"52:54:00:aa:bb:01"}, "10.1.2.3");
  EXPECT_NE(plan_wake(no_subnet, {}).refusal.find("no known subnet"), std::string::npos);
}

TEST(WakePacingTest, SpreadsDevicesAtTheRate) {
  EXPECT_EQ(wake_offset(0, 20), 0ms);
  EXPECT_EQ(wake_offset(1, 20), 50ms);
  EXPECT_EQ(wake_offset(20, 20), 1000ms);
  EXPECT_EQ(wake_offset(99, 20), 4950ms);
  EXPECT_EQ(wake_offset(5, 0), 0ms);
}

}  // namespace
}  // namespace tether::server
