// Request/response correlation for UP: each side numbers its own requests, remembers what
// it is waiting for, and matches "result" messages to them by id. No I/O and no clock of its
// own: the caller passes the time, so the owner's event loop drives expiry.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/Result.h"

namespace tether::protocol {

template <typename Context>
class PendingRequests {
 public:
  using Clock = std::chrono::steady_clock;

  // `prefix` keeps the two sides' ids apart in logs ("d" for device, "s" for server).
  PendingRequests(std::string prefix, std::size_t max_pending)
      : prefix_(std::move(prefix)), max_pending_(max_pending) {}

  // Registers a request that expects a result by `deadline`; returns its id.
  [[nodiscard]] Result<std::string> add(Context context, Clock::time_point deadline) {
    if (pending_.size() >= max_pending_) {
      return make_error(Errc::kTooLarge, "too many requests waiting for replies (" +
                                             std::to_string(max_pending_) + ")");
    }
    std::string id = prefix_ + std::to_string(++counter_);
    pending_.emplace(id, Entry{std::move(context), deadline});
    return id;
  }

  // The context of the request `id` answers, removed; nullopt for an unknown or expired id
  // (a late or forged result is dropped, never matched twice).
  [[nodiscard]] std::optional<Context> resolve(const std::string& id) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return std::nullopt;
    Context ctx = std::move(it->second.context);
    pending_.erase(it);
    return ctx;
  }

  // Removes and returns the requests whose deadline has passed, oldest id first.
  [[nodiscard]] std::vector<std::pair<std::string, Context>> expire(Clock::time_point now) {
    std::vector<std::pair<std::string, Context>> out;
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.deadline <= now) {
        out.emplace_back(it->first, std::move(it->second.context));
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }

  // Everything still waiting, removed (the channel closed).
  [[nodiscard]] std::vector<std::pair<std::string, Context>> drain() {
    std::vector<std::pair<std::string, Context>> out;
    for (auto& [id, entry] : pending_) out.emplace_back(id, std::move(entry.context));
    pending_.clear();
    return out;
  }

  [[nodiscard]] std::optional<Clock::time_point> next_deadline() const {
    std::optional<Clock::time_point> next;
    for (const auto& [id, entry] : pending_) {
      if (!next || entry.deadline < *next) next = entry.deadline;
    }
    return next;
  }

  [[nodiscard]] std::size_t size() const noexcept { return pending_.size(); }

 private:
  struct Entry {
    Context context;
    Clock::time_point deadline;
  };
  std::string prefix_;
  std::size_t max_pending_;
  std::uint64_t counter_ = 0;
  std::map<std::string, Entry> pending_;
};

}  // namespace tether::protocol
