// The device's discovery responder: a UDP socket on discovery.port (30005) adopted into the
// agent's lws loop. It answers scan probes and authenticated online checks, at most once per
// probe, never with more bytes than the probe, only to the probe's source address and reply
// port, and only when DiscoveryPolicy lets it. The socket part is thin; the rules are in
// DiscoveryPolicy and the answers in build_scan_reply / build_online_reply.
#pragma once

#include <libwebsockets.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/DiscoveryPolicy.h"
#include "common/LwsFdWatcher.h"
#include "common/LwsLoop.h"
#include "common/Result.h"
#include "common/UniqueFd.h"
#include "protocol/DiscoveryDatagram.h"

namespace tether::agent {

inline constexpr std::uint16_t kDiscoveryPort = 30005;
inline constexpr std::uint16_t kRegistrationPort = 30001;
inline constexpr const char* kProductName = "tether-agent";

// What a scan reply and an online check say about this device, asked for per probe.
struct DiscoverySelf {
  bool registered = false;
  std::optional<protocol::Sha256> server_fingerprint;  // set iff registered
  bool accepts_registration = false;
  std::string hostname;
  std::string unit_id;
  std::string version;
  OnlineIdentity online;
};
using DiscoverySelfProvider = std::function<DiscoverySelf()>;

// One local IPv4 interface: name, index, MAC (when it has one) and its networks.
struct LocalInterface {
  std::string name;
  unsigned index = 0;
  std::optional<protocol::MacAddress::Bytes> mac;
  std::vector<Ipv4Net> subnets;          // network + mask
  std::vector<std::uint32_t> addresses;  // host order
};
// getifaddrs: interfaces that are up, with their IPv4 addresses and MACs.
[[nodiscard]] Result<std::vector<LocalInterface>> read_local_interfaces();

// The unit id a scan reply carries: the lowest MAC of the machine's physical-looking
// interfaces (read_macs), else "mid-" + the first 16 hex digits of SHA-256(/etc/machine-id)
// (the machine id itself is not shown: it is meant to stay private), else "unknown".
[[nodiscard]] std::string read_unit_id();

// The scan reply for `probe` (whose encoded size was `probe_size`); kTooLarge when it does not
// fit (the prober did not pad enough).
[[nodiscard]] Result<std::vector<std::uint8_t>> build_scan_reply(
    const protocol::ScanProbe& probe, std::size_t probe_size, const DiscoverySelf& self,
    const protocol::MacAddress::Bytes& mac);
// The authenticated online reply for an accepted probe.
[[nodiscard]] Result<std::vector<std::uint8_t>> build_online_reply(
    const protocol::OnlineProbe& probe, std::size_t probe_size, const OnlineIdentity& identity);

struct DiscoveryResponderOptions {
  std::string address = "0.0.0.0";
  std::uint16_t port = kDiscoveryPort;
  DiscoveryPolicyOptions policy;
  std::string stats_path;  // discovery.json in the state directory; empty: not written
};

class DiscoveryResponder {
 public:
  // Binds the socket and adopts it into the loop. `watch_vhost` must list the fd watcher
  // protocol.
  [[nodiscard]] static Result<std::unique_ptr<DiscoveryResponder>> start(
      lws_context* ctx, lws_vhost* watch_vhost, DiscoveryResponderOptions options,
      DiscoverySelfProvider self);
  ~DiscoveryResponder();

  [[nodiscard]] const DiscoveryCounters& counters() const noexcept { return counters_; }
  [[nodiscard]] std::uint16_t port() const noexcept { return options_.port; }
  // Counts a TCP register request (the listener reports them here for the stats file).
  void count_register_request();
  // The scan reply for a probe that arrived over TCP on the local address `local_ip`
  // (no source checks or rate limits: TCP cannot be spoofed, the listener caps connections).
  [[nodiscard]] Result<std::vector<std::uint8_t>> answer_tcp_scan(const protocol::ScanProbe& probe,
                                                                  std::size_t probe_size,
                                                                  std::uint32_t local_ip);
  // Interfaces, re-read at most every 2 s (a flood must not turn into getifaddrs calls).
  [[nodiscard]] const std::vector<LocalInterface>& interfaces();

 private:
  DiscoveryResponder(lws_context* ctx, DiscoveryResponderOptions options,
                     DiscoverySelfProvider self);
  void on_readable();
  void handle(std::span<const std::uint8_t> data, std::uint32_t source, std::uint16_t source_port,
              unsigned ifindex, std::uint32_t local);
  void drop(DropReason reason, std::uint32_t source, std::uint16_t source_port);
  void stats_changed();
  void write_stats();

  DiscoveryResponderOptions options_;
  DiscoverySelfProvider self_;
  DiscoveryPolicy policy_;
  DiscoveryCounters counters_;
  UniqueFd fd_;
  std::unique_ptr<LwsFdWatcher> watcher_;
  LwsTimer stats_timer_;
  std::vector<LocalInterface> interfaces_;
  double interfaces_read_at_ = -1e9;
};

// Seconds on a monotonic clock, for the token buckets.
[[nodiscard]] double monotonic_seconds();

}  // namespace tether::agent
