#include "agent/ReconnectBackoff.h"

#include <algorithm>

namespace tether::agent {

ReconnectBackoff::ReconnectBackoff(ms base, ms cap, ms restart_spread, std::uint64_t seed)
    : base_(std::max(base, ms(1))),
      cap_(std::max(cap, base_)),
      restart_spread_(restart_spread),
      rng_(seed) {}

ReconnectBackoff::ms ReconnectBackoff::current_bound() const noexcept {
  // Doubling stops once past the cap, so the shift never overflows.
  ms bound = base_;
  for (unsigned i = 0; i < failures_ && bound < cap_; ++i) bound *= 2;
  return std::min(bound, cap_);
}

ReconnectBackoff::ms ReconnectBackoff::uniform(ms upper) {
  if (upper.count() <= 0) return ms(0);
  std::uniform_int_distribution<std::int64_t> dist(0, upper.count());
  return ms(dist(rng_));
}

ReconnectBackoff::ms ReconnectBackoff::after_failure() {
  const ms delay = uniform(current_bound());
  if (failures_ < 64) ++failures_;
  return delay;
}

ReconnectBackoff::ms ReconnectBackoff::after_server_restart() {
  failures_ = 0;
  return uniform(restart_spread_);
}

ReconnectBackoff::ms ReconnectBackoff::after_refusal() {
  failures_ = 64;
  return cap_ / 2 + uniform(cap_ / 2);
}

ReconnectBackoff::ms ReconnectBackoff::between_endpoints() {
  return uniform(base_);
}

ReconnectBackoff::ms ReconnectBackoff::after_network_change() {
  failures_ = 0;
  return uniform(base_);
}

}  // namespace tether::agent
