// When to renew the device certificate: at about two thirds of its life, with jitter (±5 %
// of the life) so that a fleet enrolled together does not renew together.
#pragma once

#include <chrono>
#include <ctime>

namespace tether::agent {

// Seconds from `now` until renewal is due (0 when already due). `jitter01` is uniform in
// [0, 1).
[[nodiscard]] std::chrono::seconds renewal_delay(std::time_t not_before, std::time_t not_after,
                                                 std::time_t now, double jitter01);

// After a failed renewal: try again in a tenth of the remaining life, between 30 s and 1 h.
[[nodiscard]] std::chrono::seconds renewal_retry_delay(std::time_t not_after, std::time_t now);

}  // namespace tether::agent
