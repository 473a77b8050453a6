#include "server/RateLimiter.h"

#include <algorithm>
#include <cmath>

namespace tether::server {

RateLimiter::RateLimiter(int per_minute, std::size_t max_sources)
    : capacity_(std::max(1, per_minute)),
      per_second_(std::max(1, per_minute) / 60.0),
      max_sources_(std::max<std::size_t>(1, max_sources)) {}

void RateLimiter::refill(Bucket& bucket, Clock::time_point now) const {
  const double elapsed = std::chrono::duration<double>(now - bucket.updated).count();
  if (elapsed > 0) {
    bucket.tokens = std::min(capacity_, bucket.tokens + elapsed * per_second_);
    bucket.updated = now;
  }
}

void RateLimiter::make_room(Clock::time_point now) {
  // Full buckets carry no information: drop them all; if none is full, drop the fullest.
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    refill(it->second, now);
    it = it->second.tokens >= capacity_ ? buckets_.erase(it) : std::next(it);
  }
  if (buckets_.size() < max_sources_) return;
  auto fullest = std::max_element(
      buckets_.begin(), buckets_.end(),
      [](const auto& a, const auto& b) { return a.second.tokens < b.second.tokens; });
  buckets_.erase(fullest);
}

std::optional<std::chrono::seconds> RateLimiter::take(const std::string& source,
                                                      Clock::time_point now) {
  auto it = buckets_.find(source);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_sources_) make_room(now);
    it = buckets_.emplace(source, Bucket{capacity_, now}).first;
  }
  Bucket& bucket = it->second;
  refill(bucket, now);
  if (bucket.tokens >= 1.0) {
    bucket.tokens -= 1.0;
    return std::nullopt;
  }
  const double wait = (1.0 - bucket.tokens) / per_second_;
  return std::chrono::seconds(std::max<long long>(1, static_cast<long long>(std::ceil(wait))));
}

}  // namespace tether::server
