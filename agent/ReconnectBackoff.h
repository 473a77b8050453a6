// When to try the server again. Capped exponential backoff with full jitter (a uniformly
// random delay in [0, min(cap, base * 2^n)]), as in AWS's "Exponential Backoff and Jitter":
// a fleet that lost its server at the same moment spreads its attempts instead of arriving
// in waves. A server that says it is restarting (close 1012/1001) gets a random delay within
// the restart spread instead, and a network change starts over from the base.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace tether::agent {

class ReconnectBackoff {
 public:
  using ms = std::chrono::milliseconds;

  ReconnectBackoff(ms base, ms cap, ms restart_spread, std::uint64_t seed);

  // Delay after a failed attempt or a lost channel; grows the bound for next time.
  [[nodiscard]] ms after_failure();
  // Delay after the server announced a restart or shutdown; resets the growth.
  [[nodiscard]] ms after_server_restart();
  // Delay after the network changed (link, address, route): the old bound means nothing now.
  [[nodiscard]] ms after_network_change();
  // Delay after the server refused this device outright (revoked): no point in hurrying.
  [[nodiscard]] ms after_refusal();
  // Delay before trying the next endpoint of a list within one round (EndpointList): small
  // and jittered, and the bound does not grow (it grows once per round, in after_failure).
  [[nodiscard]] ms between_endpoints();
  // The channel worked (hello answered): the next failure starts from the base again.
  void reset() noexcept { failures_ = 0; }

  [[nodiscard]] unsigned failures() const noexcept { return failures_; }
  // The bound the next after_failure() draws from.
  [[nodiscard]] ms current_bound() const noexcept;

 private:
  ms uniform(ms upper);

  ms base_;
  ms cap_;
  ms restart_spread_;
  unsigned failures_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace tether::agent
