#include "agent/DiscoveryPolicy.h"

#include <gtest/gtest.h>

#include <vector>

#include "agent/AgentDiscovery.h"
#include "agent/DiscoveryRegistrar.h"
#include "agent/DiscoveryResponder.h"
#include "agent/WakeOnLan.h"
#include "common/Hex.h"
#include "protocol/WakeOnLanPacket.h"
#include "tests/unit/TempDir.h"

namespace tether::agent {
namespace {

std::uint32_t ip(const char* text) {
  return *parse_ipv4(text);
}

std::vector<Ipv4Net> lan() {
  return {*parse_ipv4_cidr("10.1.2.7/24"), *parse_ipv4_cidr("127.0.0.1/8")};
}

DiscoveryPolicyOptions options() {
  DiscoveryPolicyOptions o;
  o.own_ports = {30005, 30001, 40000};
  o.limits = {.rate_per_source = 2, .burst_per_source = 3, .rate_total = 10, .burst_total = 5};
  return o;
}

TEST(Ipv4Cidr, ParsesAndRejects) {
  auto net = parse_ipv4_cidr("10.1.2.7/24");
  ASSERT_TRUE(net.ok());
  EXPECT_EQ(net->address, ip("10.1.2.0"));
  EXPECT_EQ(net->broadcast(), ip("10.1.2.255"));
  EXPECT_TRUE(net->contains(ip("10.1.2.200")));
  EXPECT_FALSE(net->contains(ip("10.1.3.1")));
  EXPECT_EQ(parse_ipv4_cidr("10.0.0.1")->mask, 0xFFFFFFFFu);
  EXPECT_EQ(parse_ipv4_cidr("0.0.0.0/0")->mask, 0u);
  for (const char* bad : {"10.1.2.0/33", "10.1.2/24", "10.1.2.0/", "x/8", "10.1.2.0/2a", ""}) {
    EXPECT_FALSE(parse_ipv4_cidr(bad).ok()) << bad;
  }
  auto list = parse_ipv4_cidr_list("10.0.0.0/8, 192.168.1.0/24");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 2u);
  EXPECT_TRUE(parse_ipv4_cidr_list("")->empty());
  EXPECT_FALSE(parse_ipv4_cidr_list("10.0.0.0/8,nonsense").ok());
}

TEST(DiscoveryPolicy, RefusesSourcesThatNameNoHostOrAreOffLink) {
  DiscoveryPolicy policy(options());
  const auto subnets = lan();
  EXPECT_EQ(policy.check_source(ip("10.1.2.9"), subnets), std::nullopt);
  for (const char* bad : {"0.0.0.0", "255.255.255.255", "224.0.0.1", "239.1.2.3", "240.0.0.1",
                          "10.1.2.255", "10.1.2.0", "0.1.2.3", "127.0.0.1"}) {
    EXPECT_EQ(policy.check_source(ip(bad), subnets), DropReason::kBadSource) << bad;
  }
  EXPECT_EQ(policy.check_source(ip("10.9.9.9"), subnets), DropReason::kOffLink);
}

TEST(DiscoveryPolicy, ManagementNetworksAndLoopbackWhenAllowed) {
  auto o = options();
  o.management_networks = {*parse_ipv4_cidr("10.9.0.0/16")};
  o.allow_loopback = true;
  DiscoveryPolicy policy(o);
  EXPECT_EQ(policy.check_source(ip("10.9.9.9"), lan()), std::nullopt);
  EXPECT_EQ(policy.check_source(ip("10.8.9.9"), lan()), DropReason::kOffLink);
  EXPECT_EQ(policy.check_source(ip("127.0.0.1"), lan()), std::nullopt);
}

TEST(DiscoveryPolicy, RefusesReservedAndOwnReplyPorts) {
  DiscoveryPolicy policy(options());
  for (std::uint16_t p : {0, 7, 9, 53, 123, 1023}) {
    EXPECT_EQ(policy.check_reply_port(p), DropReason::kReservedPort) << p;
  }
  for (std::uint16_t p : {30005, 30001, 40000}) {
    EXPECT_EQ(policy.check_reply_port(p), DropReason::kOwnPort) << p;
  }
  EXPECT_EQ(policy.check_reply_port(1024), std::nullopt);
  EXPECT_EQ(policy.check_reply_port(50000), std::nullopt);
}

TEST(DiscoveryPolicy, RateLimitsPerSourceNetworkThenRefills) {
  DiscoveryPolicy policy(options());
  double t = 100.0;
  // Burst of 3 for 10.1.2.x, shared by every host of the /24.
  EXPECT_EQ(policy.take_rate(ip("10.1.2.9"), t), std::nullopt);
  EXPECT_EQ(policy.take_rate(ip("10.1.2.10"), t), std::nullopt);
  EXPECT_EQ(policy.take_rate(ip("10.1.2.11"), t), std::nullopt);
  EXPECT_EQ(policy.take_rate(ip("10.1.2.9"), t), DropReason::kRateSource);
  // Another network still gets its own burst (within the total's).
  EXPECT_EQ(policy.take_rate(ip("10.1.3.9"), t), std::nullopt);
  // Half a second later one token (rate 2/s) is back.
  t += 0.5;
  EXPECT_EQ(policy.take_rate(ip("10.1.2.9"), t), std::nullopt);
  EXPECT_EQ(policy.take_rate(ip("10.1.2.9"), t), DropReason::kRateSource);
}

TEST(DiscoveryPolicy, RateLimitsOverall) {
  DiscoveryPolicy policy(options());
  const double t = 5.0;
  int granted = 0;
  int total_refusals = 0;
  for (int net = 0; net < 20; ++net) {
    const std::uint32_t source = ip("10.50.0.1") + static_cast<std::uint32_t>(net << 8);
    auto r = policy.take_rate(source, t);
    if (!r) ++granted;
    if (r == DropReason::kRateTotal) ++total_refusals;
  }
  EXPECT_EQ(granted, 5);  // burst_total
  EXPECT_EQ(total_refusals, 15);
  // A flooding source does not use up the shared budget once its own bucket is empty.
  DiscoveryPolicy p2(options());
  for (int i = 0; i < 100; ++i) (void)p2.take_rate(ip("10.1.2.9"), t);
  EXPECT_EQ(p2.take_rate(ip("10.1.3.9"), t), std::nullopt);
  EXPECT_EQ(p2.take_rate(ip("10.1.4.9"), t), std::nullopt);
}

TEST(DiscoveryPolicy, BoundsTrackedSources) {
  auto o = options();
  o.max_tracked_sources = 4;
  o.limits.burst_total = 1000;
  DiscoveryPolicy policy(o);
  for (int net = 0; net < 4; ++net) {
    EXPECT_EQ(policy.take_rate(ip("10.60.0.1") + static_cast<std::uint32_t>(net << 8), 1.0),
              std::nullopt);
  }
  // Table full of buckets that have not refilled: a new network is refused...
  EXPECT_EQ(policy.take_rate(ip("10.70.0.1"), 1.0), DropReason::kRateTotal);
  // ...until they have.
  EXPECT_EQ(policy.take_rate(ip("10.70.0.1"), 100.0), std::nullopt);
}

struct OnlineFixture {
  OnlineIdentity identity;
  std::vector<std::uint8_t> key = std::vector<std::uint8_t>(32, 0x5a);
  OnlineFixture() {
    identity.device_id.fill(0x11);
    identity.online_key = key;
  }
  protocol::OnlineProbe probe(std::uint64_t nonce, std::uint64_t ts,
                              std::span<const std::uint8_t> with_key,
                              std::optional<protocol::Sha256> device = std::nullopt) const {
    protocol::OnlineProbe p;
    p.nonce = nonce;
    p.reply_port = 40001;
    p.device_id = device.value_or(identity.device_id);
    p.timestamp = ts;
    p.padding = 40;
    auto bytes = protocol::encode_online_probe(p, with_key);
    auto decoded = protocol::decode_datagram(*bytes);
    return std::get<protocol::OnlineProbe>(*decoded);
  }
};

TEST(DiscoveryPolicy, OnlineProbeNeedsAValidFreshUnseenAuthenticator) {
  OnlineFixture f;
  DiscoveryPolicy policy(options());
  const std::int64_t now = 1'800'000'000;
  EXPECT_EQ(policy.check_online_probe(f.probe(1, now, f.key), f.identity, now, 10.0), std::nullopt);
  // Replay of the very same probe.
  EXPECT_EQ(policy.check_online_probe(f.probe(1, now, f.key), f.identity, now, 11.0),
            DropReason::kReplay);
  // Forged: another key.
  const std::vector<std::uint8_t> other(32, 0x66);
  EXPECT_EQ(policy.check_online_probe(f.probe(2, now, other), f.identity, now, 10.0),
            DropReason::kBadAuthenticator);
  // Tampered after signing: the decoder's signed bytes no longer match.
  auto tampered = f.probe(3, now, f.key);
  tampered.signed_bytes[20] ^= 1;
  EXPECT_EQ(policy.check_online_probe(tampered, f.identity, now, 10.0),
            DropReason::kBadAuthenticator);
  EXPECT_EQ(policy.check_online_probe(f.probe(4, now, {}), f.identity, now, 10.0),
            DropReason::kNoAuthenticator);
  protocol::Sha256 someone_else{};
  someone_else.fill(0x22);
  EXPECT_EQ(policy.check_online_probe(f.probe(5, now, f.key, someone_else), f.identity, now, 10.0),
            DropReason::kWrongDevice);
  EXPECT_EQ(policy.check_online_probe(f.probe(6, now - 121, f.key), f.identity, now, 10.0),
            DropReason::kStale);
  EXPECT_EQ(policy.check_online_probe(f.probe(7, now + 121, f.key), f.identity, now, 10.0),
            DropReason::kStale);
  EXPECT_EQ(policy.check_online_probe(f.probe(8, now + 120, f.key), f.identity, now, 10.0),
            std::nullopt);
  // Unregistered: no key, no answer, even to a well-formed probe.
  OnlineIdentity unregistered = f.identity;
  unregistered.online_key.clear();
  EXPECT_EQ(policy.check_online_probe(f.probe(9, now, f.key), unregistered, now, 10.0),
            DropReason::kNotRegistered);
  // The replay cache forgets after the validity window.
  EXPECT_EQ(policy.check_online_probe(f.probe(1, now, f.key), f.identity, now, 10.0 + 300),
            std::nullopt);
}

TEST(DiscoveryReplies, NeverLargerThanTheProbe) {
  DiscoverySelf self;
  self.registered = true;
  self.server_fingerprint = protocol::Sha256{};
  self.hostname = std::string(200, 'h');
  self.unit_id = "52:54:00:12:34:56";
  self.version = "0.1.0";
  protocol::MacAddress::Bytes mac = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
  protocol::ScanProbe probe{.nonce = 7, .reply_port = 40000, .padding = 0};
  const auto small = *protocol::encode_scan_probe(probe);
  EXPECT_FALSE(build_scan_reply(probe, small.size(), self, mac).ok());
  probe.padding = 500;
  const auto big = *protocol::encode_scan_probe(probe);
  auto reply = build_scan_reply(probe, big.size(), self, mac);
  ASSERT_TRUE(reply.ok());
  EXPECT_LE(reply->size(), big.size());
  auto decoded = protocol::decode_datagram(*reply);
  ASSERT_TRUE(decoded.ok());
  const auto& r = std::get<protocol::ScanReply>(*decoded);
  EXPECT_EQ(r.nonce, 7u);
  EXPECT_EQ(r.product, "tether-agent");
  EXPECT_TRUE(r.registered);
  EXPECT_EQ(r.mac, mac);
}

TEST(DiscoveryReplies, OnlineReplyIsAuthenticatedWithTheKey) {
  OnlineFixture f;
  const auto probe = f.probe(1, 1000, f.key);
  auto reply = build_online_reply(probe, 93, f.identity);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->size(), 82u);
  auto decoded = protocol::decode_datagram(*reply);
  const auto& r = std::get<protocol::OnlineReply>(*decoded);
  ASSERT_TRUE(r.authenticator);
  EXPECT_TRUE(protocol::verify_authenticator(f.key, r.signed_bytes, *r.authenticator));
  EXPECT_FALSE(build_online_reply(probe, 81, f.identity).ok());
}

TEST(RegisterDecision, FollowsTheDeviceState) {
  protocol::RegisterRequest req;
  req.server_fingerprint.fill(0xab);
  const std::string ours = hex_encode(req.server_fingerprint);
  using S = protocol::RegisterStatus;
  EXPECT_EQ(decide_register_request(req, false, {}, true, false), S::kAccepted);
  EXPECT_EQ(decide_register_request(req, false, {}, false, false), S::kDisabled);
  EXPECT_EQ(decide_register_request(req, false, {}, true, true), S::kBusy);
  EXPECT_EQ(decide_register_request(req, true, {ours}, true, false), S::kAlreadyRegistered);
  EXPECT_EQ(decide_register_request(req, true, {std::string(64, '0')}, true, false),
            S::kRegisteredElsewhere);
  EXPECT_EQ(decide_register_request(req, true, {std::string(64, '0')}, false, false),
            S::kRegisteredElsewhere);
}

TEST(WakePeer, SendsOnlyToOwnDirectedBroadcasts) {
  const std::vector<Ipv4Net> subnets = {*parse_ipv4_cidr("10.1.2.7/24"),
                                        *parse_ipv4_cidr("192.168.5.1/32")};
  protocol::WakePeer req;
  req.targets = {{"52:54:00:aa:bb:cc", "10.1.2.255"},
                 {"52:54:00:aa:bb:cd", "10.1.3.255"},
                 {"52:54:00:aa:bb:ce", "10.1.2.7"},
                 {"52:54:00:aa:bb:cf", "192.168.5.1"},
                 {"01:00:5e:00:00:01", "10.1.2.255"}};
  struct Sent {
    std::uint32_t ip;
    std::uint16_t port;
    std::vector<std::uint8_t> payload;
  };
  std::vector<Sent> sent;
  auto sender = [&sent](std::uint32_t ip_addr, std::uint16_t port,
                        std::span<const std::uint8_t> payload) -> Status {
    sent.push_back({ip_addr, port, {payload.begin(), payload.end()}});
    return {};
  };
  auto result = wake_peers(req, subnets, sender);
  ASSERT_TRUE(result.ok()) << result.error().message;
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].ip, ip("10.1.2.255"));
  EXPECT_EQ(sent[0].port, 9);
  EXPECT_EQ(sent[1].port, 7);
  EXPECT_TRUE(protocol::is_magic_packet_for(sent[0].payload,
                                            *protocol::MacAddress::parse("52:54:00:aa:bb:cc")));
  EXPECT_EQ((*result)["sent"], 2);
  const auto& targets = (*result)["targets"];
  ASSERT_EQ(targets.size(), 5u);
  EXPECT_EQ(targets[0]["ports"], nlohmann::json::array({9, 7}));
  for (int i = 1; i < 5; ++i) EXPECT_TRUE(targets[i].contains("error")) << targets[i].dump();

  // Nothing acceptable: an error naming every refusal; nothing sent.
  sent.clear();
  protocol::WakePeer bad;
  bad.targets = {{"52:54:00:aa:bb:cd", "10.1.3.255"}};
  bad.ports = {4000};
  auto refused = wake_peers(bad, subnets, sender);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kBadValue);
  EXPECT_NE(refused.error().message.find("10.1.3.255"), std::string::npos);
  EXPECT_TRUE(sent.empty());

  // Explicit ports are used as given.
  protocol::WakePeer one;
  one.targets = {{"52:54:00:aa:bb:cc", "10.1.2.255"}};
  one.ports = {4000};
  ASSERT_TRUE(wake_peers(one, subnets, sender).ok());
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].port, 4000);
}

TEST(OnlineKeyFile, StoredPrivateAndChecked) {
  tether::testing::TempDir dir;
  StatePaths paths(dir.path());
  EXPECT_FALSE(load_online_key(paths)->has_value());
  const std::string key(64, 'a');
  ASSERT_TRUE(save_online_key(paths, key).ok());
  EXPECT_EQ(tether::testing::mode_of(online_key_path(paths)) & 0777, 0600u);
  EXPECT_EQ(load_online_key(paths)->value_or(""), key);
  EXPECT_FALSE(save_online_key(paths, "abc").ok());
  EXPECT_FALSE(save_online_key(paths, std::string(64, 'A')).ok());
  dir.write("online.key", "nothex\n");
  ::chmod(online_key_path(paths).c_str(), 0600);
  EXPECT_FALSE(load_online_key(paths).ok());
  // Readable by others: refused (it is a secret).
  dir.write("online.key", key + "\n");
  ::chmod(online_key_path(paths).c_str(), 0644);
  EXPECT_FALSE(load_online_key(paths).ok());
}

TEST(WiredNics, PhysicalEthernetOnly) {
  tether::testing::TempDir dir;
  auto nic = [&dir](const std::string& name, const char* type, bool device, bool wireless) {
    std::filesystem::create_directories(dir / name);
    if (device) std::filesystem::create_directories(dir / (name + "/device"));
    if (wireless) std::filesystem::create_directories(dir / (name + "/wireless"));
    dir.write(name + "/type", type);
    if (device) dir.write(name + "/device/vendor", "0x8086\n");
    if (wireless) dir.write(name + "/wireless/x", "");
  };
  nic("eth0", "1\n", true, false);
  nic("enp3s0", "1\n", true, false);
  nic("wlan0", "1\n", true, true);
  nic("veth1", "1\n", false, false);
  nic("ib0", "32\n", true, false);
  nic("lo", "772\n", false, false);
  EXPECT_EQ(wired_nics(dir.path()), (std::vector<std::string>{"enp3s0", "eth0"}));
}

}  // namespace
}  // namespace tether::agent
