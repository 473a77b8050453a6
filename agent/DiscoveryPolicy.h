// The rules the discovery responder applies to every datagram before it answers, kept free of
// sockets and clocks so that unit tests drive them with fakes: which sources may get a reply
// at all, which reply ports are refused, token-bucket rate limits per source network and
// overall, the checks on an authenticated online probe, and counters per reason for dropping.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/Result.h"
#include "protocol/DiscoveryDatagram.h"

namespace tether::agent {

// An IPv4 network; addresses in host byte order.
struct Ipv4Net {
  std::uint32_t address = 0;
  std::uint32_t mask = 0;
  [[nodiscard]] bool contains(std::uint32_t ip) const noexcept {
    return (ip & mask) == (address & mask);
  }
  // The directed broadcast address (all host bits set); the address itself for /31 and /32.
  [[nodiscard]] std::uint32_t broadcast() const noexcept {
    return mask >= 0xFFFFFFFEu ? address : ((address & mask) | ~mask);
  }
  friend bool operator==(const Ipv4Net&, const Ipv4Net&) = default;
};

// "10.1.2.0/24" (a bare address is /32). Errors: kBadValue.
[[nodiscard]] Result<Ipv4Net> parse_ipv4_cidr(std::string_view text);
// A comma- or space-separated list of CIDRs; empty text is an empty list.
[[nodiscard]] Result<std::vector<Ipv4Net>> parse_ipv4_cidr_list(std::string_view text);
// Dotted quad, host byte order. Errors: kBadValue.
[[nodiscard]] Result<std::uint32_t> parse_ipv4(std::string_view text);
[[nodiscard]] std::string ipv4_to_string(std::uint32_t ip);

// Why a datagram got no reply. The names (drop_reason_name) are what `status --json` shows.
enum class DropReason {
  kMalformed,         // does not decode (truncated, bad magic, padding, ...)
  kNotAProbe,         // a reply or a request this port does not take
  kReservedPort,      // reply port below 1024
  kOwnPort,           // reply port is one of ours (30001, 30005, discovery.port)
  kBadSource,         // broadcast, multicast, unspecified, loopback (unless allowed), class E
  kOffLink,           // not in a local subnet nor in discovery.management_networks
  kRateSource,        // the source network's bucket is empty
  kRateTotal,         // the overall bucket is empty
  kNotRegistered,     // online probe to a device that has no online key
  kWrongDevice,       // online probe for another device id
  kNoAuthenticator,   // online probe without an authenticator
  kBadAuthenticator,  // authenticator does not verify
  kStale,             // online probe timestamp more than 120 s away from our clock
  kReplay,            // an online probe seen before
  kReplyTooLarge,     // the reply would be larger than the probe (the probe was not padded)
  kSendFailed,        // sendto failed
};
inline constexpr std::size_t kDropReasonCount = 16;
[[nodiscard]] std::string_view drop_reason_name(DropReason reason) noexcept;

// Tokens refill at `rate` per second up to `burst`; one token per reply.
class TokenBucket {
 public:
  TokenBucket(double rate, double burst, double now_s) noexcept
      : rate_(rate), burst_(burst), tokens_(burst), last_(now_s) {}
  [[nodiscard]] bool take(double now_s) noexcept;
  [[nodiscard]] bool full(double now_s) const noexcept;

 private:
  double rate_;
  double burst_;
  double tokens_;
  double last_;
};

struct DiscoveryLimits {
  double rate_per_source = 5;  // replies per second per source /24
  double burst_per_source = 20;
  double rate_total = 100;  // replies per second overall
  double burst_total = 200;
};

struct DiscoveryPolicyOptions {
  std::vector<std::uint16_t> own_ports;      // never a reply port
  std::vector<Ipv4Net> management_networks;  // off-link sources that may still be answered
  bool allow_loopback = false;               // tests and same-host tools
  DiscoveryLimits limits;
  std::int64_t online_clock_skew_s = 120;  // accepted |probe timestamp - now|
  std::size_t max_tracked_sources = 4096;  // per-source buckets kept (bounded memory)
  std::size_t replay_cache_size = 4096;
};

// What the device knows about itself for online checks.
struct OnlineIdentity {
  protocol::Sha256 device_id{};
  std::vector<std::uint8_t> online_key;  // 32 bytes; empty when not registered / no key yet
};

// Counters per drop reason plus replies sent; all monotonic.
struct DiscoveryCounters {
  std::uint64_t received = 0;
  std::uint64_t scan_replies = 0;
  std::uint64_t online_replies = 0;
  std::uint64_t register_requests = 0;
  std::array<std::uint64_t, kDropReasonCount> dropped{};
  void count(DropReason reason) noexcept { ++dropped[static_cast<std::size_t>(reason)]; }
  [[nodiscard]] std::uint64_t drops(DropReason reason) const noexcept {
    return dropped[static_cast<std::size_t>(reason)];
  }
};

class DiscoveryPolicy {
 public:
  explicit DiscoveryPolicy(DiscoveryPolicyOptions options) : options_(std::move(options)) {}

  // Checks the probe's source (before decoding): may this address get a reply at all?
  // `local_subnets` are the IPv4 networks of this device's interfaces.
  [[nodiscard]] std::optional<DropReason> check_source(
      std::uint32_t source, std::span<const Ipv4Net> local_subnets) const;
  // Checks the reply port a decoded probe names.
  [[nodiscard]] std::optional<DropReason> check_reply_port(std::uint16_t port) const;
  // Takes a token from the source's /24 bucket and from the overall bucket, or says which
  // was empty. A refused probe takes nothing from the other bucket.
  [[nodiscard]] std::optional<DropReason> take_rate(std::uint32_t source, double now_s);
  // Checks an online probe against the device's identity: registered, same device id,
  // authenticator verifies, timestamp within the skew, nonce/authenticator not seen before.
  // Remembers an accepted probe for the replay check.
  [[nodiscard]] std::optional<DropReason> check_online_probe(const protocol::OnlineProbe& probe,
                                                             const OnlineIdentity& identity,
                                                             std::int64_t unix_now, double now_s);

  [[nodiscard]] const DiscoveryPolicyOptions& options() const noexcept { return options_; }

 private:
  DiscoveryPolicyOptions options_;
  std::map<std::uint32_t, TokenBucket> per_source_;
  std::optional<TokenBucket> total_;
  using Authenticator = std::array<std::uint8_t, protocol::kAuthenticatorSize>;
  // Authenticators of accepted online probes, and when each may be forgotten (now_s) in the
  // order they were accepted: all are kept equally long, so forgetting stops at the first live
  // one instead of walking the whole cache for every probe (a flood of probes did that).
  std::set<Authenticator> seen_;
  std::deque<std::pair<double, Authenticator>> seen_order_;
};

}  // namespace tether::agent
