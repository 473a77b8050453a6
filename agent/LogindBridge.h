// platform::Logind on the agent's lws loop: its sd-bus fd is adopted into the loop, its
// timeouts become an lws timer, and every call is followed by a pump so that queued
// messages go out. Missing logind is not fatal: the commands that need it fail with the
// reason.
#pragma once

#include <memory>
#include <string>

#include "common/LwsFdWatcher.h"
#include "common/LwsLoop.h"
#include "platform/Logind.h"

namespace tether::agent {

class LogindBridge {
 public:
  // `vhost` must list the fd-watcher protocol. On failure the bridge still exists and every
  // call reports why logind cannot be reached.
  LogindBridge(lws_context* ctx, lws_vhost* vhost);
  ~LogindBridge();

  [[nodiscard]] bool connected() const noexcept { return logind_ != nullptr; }
  [[nodiscard]] const std::string& connect_error() const noexcept { return connect_error_; }

  void reboot(platform::Logind::Done done);
  void power_off(platform::Logind::Done done);
  void find_graphical_session(platform::Logind::SessionDone done);

 private:
  // Runs sd-bus's work and re-arms the fd watch and the timer from its new state.
  void pump();
  void rearm();

  lws_vhost* vhost_;
  std::unique_ptr<platform::Logind> logind_;
  std::unique_ptr<LwsFdWatcher> watch_;
  LwsTimer timer_;
  std::string connect_error_;
  bool pumping_ = false;
};

}  // namespace tether::agent
