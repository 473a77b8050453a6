// Asks whether an endpoint accepts TCP connections, without disturbing the channel in use:
// a non-blocking connect watched on the lws loop (LwsFdWatcher), bounded by a timer, closed
// at once. UpClient uses it to notice that the preferred endpoint is back.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "common/LwsFdWatcher.h"
#include "common/LwsLoop.h"
#include "common/UniqueFd.h"
#include "protocol/EnrollmentToken.h"

namespace tether::agent {

class EndpointProbe {
 public:
  // `reachable` and, when not, why (in words).
  using Done = std::function<void(bool reachable, const std::string& why)>;

  // `vhost` must list lws_fd_watcher_protocol().
  EndpointProbe(lws_context* context, lws_vhost* vhost);
  ~EndpointProbe();
  EndpointProbe(const EndpointProbe&) = delete;
  EndpointProbe& operator=(const EndpointProbe&) = delete;

  // Connects to `url`'s host and port; `done` is called once, from the loop (never from
  // inside start), within `timeout`. Starting again abandons a probe still running.
  void start(const protocol::ServerUrl& url, std::chrono::milliseconds timeout, Done done);
  // Abandons a running probe; its `done` is not called.
  void cancel();
  [[nodiscard]] bool running() const noexcept { return static_cast<bool>(done_); }

 private:
  void check();
  void finish(bool reachable, std::string why);

  lws_vhost* vhost_;
  LwsTimer timer_;  // the timeout, or the deferred report of an immediate outcome
  UniqueFd fd_;
  std::unique_ptr<LwsFdWatcher> watcher_;
  Done done_;
  bool decided_ = false;  // an outcome waits for timer_ to report it
  bool reachable_ = false;
  std::string why_;
};

}  // namespace tether::agent
