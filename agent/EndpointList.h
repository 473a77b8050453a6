// The UP channel's endpoints in order of preference (server.url, then server.fallback_urls,
// e.g. the LAN server and then gateways) and where the agent stands in its round through them.
// Pure bookkeeping: no I/O and no clock; the caller's ReconnectBackoff supplies the delays.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "agent/ReconnectBackoff.h"
#include "common/Result.h"
#include "protocol/EnrollmentToken.h"

namespace tether::agent {

inline constexpr std::size_t kMaxEndpoints = 16;

class EndpointList {
 public:
  using ms = std::chrono::milliseconds;

  // `primary` first, then each wss:// URL in `fallbacks` (separated by spaces or commas), in
  // that order; an endpoint listed twice counts once (its first place).
  [[nodiscard]] static Result<EndpointList> parse(std::string_view primary,
                                                  std::string_view fallbacks);
  // At least one endpoint.
  explicit EndpointList(std::vector<protocol::ServerUrl> endpoints);

  [[nodiscard]] const protocol::ServerUrl& current() const noexcept { return endpoints_[index_]; }
  [[nodiscard]] std::size_t index() const noexcept { return index_; }
  [[nodiscard]] std::size_t size() const noexcept { return endpoints_.size(); }
  [[nodiscard]] const protocol::ServerUrl& primary() const noexcept { return endpoints_.front(); }
  // On an endpoint other than the preferred one: worth probing the preferred one.
  [[nodiscard]] bool on_fallback() const noexcept { return index_ > 0; }
  // The canonical wss://host:port of every endpoint, in order.
  [[nodiscard]] std::vector<std::string> urls() const;

  // The attempt at, or the channel to, the current endpoint failed: moves on to the next one
  // and returns the delay before trying it. Within a round that is a small jittered delay
  // (the bound does not grow); after the last endpoint the round starts again at endpoint 0
  // after the backoff, which grows once per round.
  [[nodiscard]] ms failed(ReconnectBackoff& backoff);
  // The server refused this device outright (revoked): moves on as after a failure, but the
  // end of a round waits out the refusal delay.
  [[nodiscard]] ms refused(ReconnectBackoff& backoff);
  // The server behind the current endpoint announced a restart: the same endpoint again,
  // after the restart spread (if it is still gone then, that attempt fails and moves on).
  [[nodiscard]] ms restarting(ReconnectBackoff& backoff);
  // Back to the preferred endpoint (a probe of it succeeded, or the network changed).
  void to_primary() noexcept { index_ = 0; }

 private:
  // Moves to the next endpoint; true when that wrapped around to endpoint 0.
  bool advance() noexcept;

  std::vector<protocol::ServerUrl> endpoints_;
  std::size_t index_ = 0;
};

}  // namespace tether::agent
