// The libwebsockets event loop that every Tether daemon runs on: RAII for the context, timers
// on lws_sul, lws's own log lines routed into ours, and a way for signal handlers to wake the
// loop. One loop per process; everything here must be used from the loop's thread.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <functional>
#include <memory>

namespace tether {

struct LwsContextDeleter {
  void operator()(lws_context* ctx) const noexcept { lws_context_destroy(ctx); }
};
using LwsContextPtr = std::unique_ptr<lws_context, LwsContextDeleter>;

// Routes libwebsockets' own messages (errors and warnings; notices with `verbose`) to
// tether::log so they carry journald priorities.
void route_lws_logging(bool verbose);

// A one-shot timer on the loop. Scheduling again replaces the pending expiry. Not movable:
// lws keeps a pointer to it while it is scheduled; the destructor cancels.
class LwsTimer {
 public:
  LwsTimer(lws_context* ctx, std::function<void()> on_expiry);
  ~LwsTimer();
  LwsTimer(const LwsTimer&) = delete;
  LwsTimer& operator=(const LwsTimer&) = delete;

  void schedule(std::chrono::microseconds delay);
  void cancel();
  [[nodiscard]] bool pending() const noexcept { return pending_; }

 private:
  static void trampoline(lws_sorted_usec_list_t* sul);

  // lws hands back the list node; a standard-layout wrapper leads from it to its owner.
  struct Node {
    lws_sorted_usec_list_t sul;
    LwsTimer* owner;
  };
  Node node_{};
  lws_context* ctx_;
  std::function<void()> on_expiry_;
  bool pending_ = false;
};

}  // namespace tether
