// The life of a daemon's lws loop, the same for tether-server and tether-gateway: SIGTERM
// and SIGINT ask for a stop (the handler sets a flag and wakes the loop with
// lws_cancel_service), a tick timer drives periodic work, and a stop is graceful: the
// daemon begins its shutdown, then the loop runs until nothing is left to drain or the
// grace period is over.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <functional>
#include <memory>

#include "common/LwsLoop.h"

namespace tether::server {

class DaemonLoop {
 public:
  struct Hooks {
    std::function<void()> tick;            // periodic work; an exception is logged, not fatal
    std::function<void()> begin_shutdown;  // once, when a stop has been asked for
    std::function<bool()> drained;         // nothing left to finish: the loop may end
  };

  DaemonLoop(std::chrono::milliseconds tick, std::chrono::milliseconds grace, Hooks hooks);
  ~DaemonLoop();
  DaemonLoop(const DaemonLoop&) = delete;
  DaemonLoop& operator=(const DaemonLoop&) = delete;

  // SIGTERM and SIGINT ask for a stop; SIGPIPE is ignored (writes report EPIPE instead).
  static void install_signal_handlers();
  // What the signals do; async-signal-safe.
  static void request_stop() noexcept;

  // Runs `ctx` until a stop was asked for and the daemon drained (or the grace ran out).
  void run(lws_context* ctx);
  // For the listener's wake handler (lws_cancel_service lands there): starts the shutdown
  // once a stop has been asked for.
  void on_wake();

 private:
  void begin_shutdown();
  void on_tick();

  std::chrono::milliseconds tick_interval_;
  std::chrono::milliseconds grace_;
  Hooks hooks_;
  std::unique_ptr<LwsTimer> tick_;
  std::chrono::steady_clock::time_point deadline_{};
  bool stopping_ = false;
};

}  // namespace tether::server
