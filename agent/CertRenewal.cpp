#include "agent/CertRenewal.h"

#include <algorithm>
#include <cmath>

namespace tether::agent {

std::chrono::seconds renewal_delay(std::time_t not_before, std::time_t not_after, std::time_t now,
                                   double jitter01) {
  const double life = std::max<double>(1.0, static_cast<double>(not_after - not_before));
  const double fraction = 2.0 / 3.0 + (std::clamp(jitter01, 0.0, 1.0) - 0.5) * 0.1;
  const auto due = static_cast<std::time_t>(static_cast<double>(not_before) + life * fraction);
  return std::chrono::seconds(std::max<std::time_t>(0, due - now));
}

std::chrono::seconds renewal_retry_delay(std::time_t not_after, std::time_t now) {
  const std::time_t remaining = std::max<std::time_t>(0, not_after - now);
  return std::chrono::seconds(std::clamp<std::time_t>(remaining / 10, 30, 3600));
}

}  // namespace tether::agent
