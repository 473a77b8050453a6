// A token bucket per source address: `per_minute` attempts, refilled continuously. The
// number of sources tracked is capped; when full, the source whose bucket is fullest (the
// least recently limited) is forgotten first, which only ever errs towards allowing.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <unordered_map>

namespace tether::server {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  RateLimiter(int per_minute, std::size_t max_sources = 4096);

  // Takes one attempt for `source` at `now`. nullopt: allowed; otherwise how long until the
  // next attempt would be allowed (at least one second, for Retry-After).
  [[nodiscard]] std::optional<std::chrono::seconds> take(const std::string& source,
                                                         Clock::time_point now);
  [[nodiscard]] std::size_t tracked_sources() const noexcept { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point updated;
  };
  void refill(Bucket& bucket, Clock::time_point now) const;
  void make_room(Clock::time_point now);

  double capacity_;
  double per_second_;
  std::size_t max_sources_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace tether::server
