// What the HTTPS listener counts about its WebSocket channels, on the server and on a
// gateway (docs/metrics.md): upgrades accepted and refused (by reason), reconnects, and the
// channels open now. Channel kinds by name: "up" (devices) and "link" (the server's link to
// a gateway).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>

#include "common/MetricsRegistry.h"
#include "common/Result.h"

namespace tether::server {

// The reason label of a refused upgrade, from the sink's error: bad_certificate (no or an
// unverified client certificate), unknown_device, revoked, deleted, not_allowed (a gateway's
// list), not_link_certificate (a gateway's link), connection_limit, unavailable, store_error,
// wrong_path, other.
[[nodiscard]] std::string channel_refusal_reason(const Error& error);

class ChannelMetrics {
 public:
  // `open_channels(kind)`: channels of that kind open now (read at render time).
  ChannelMetrics(MetricsRegistry& registry, std::function<double(std::string_view)> open_channels);

  void accepted(std::string_view kind, const std::string& peer);
  void refused(std::string_view kind, std::string_view reason);

 private:
  MetricsRegistry::Family<Counter> handshakes_;
  MetricsRegistry::Family<Counter> reconnects_;
  // Hashes of the peers that had a channel accepted by this process, per kind: 8 bytes a
  // device rather than its 64-digit id (a collision at most miscounts one reconnect).
  std::unordered_set<std::uint64_t> seen_[2];
};

}  // namespace tether::server
