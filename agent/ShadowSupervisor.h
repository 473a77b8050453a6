// Owns the device's shadowing sessions: at most one at a time (another shadow_start is
// refused with `busy` until the current one has fully ended). Applies the local policy
// (shadow.* settings, read at each request) before anything runs, routes shadow_stop from the
// server, and ends every session when the agent stops.
#pragma once

#include <libwebsockets.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "agent/ShadowSession.h"
#include "common/Config.h"
#include "common/LwsLoop.h"

namespace tether::agent {

class ShadowSupervisor {
 public:
  struct Hooks {
    // The vhost sessions connect and adopt on (the UP client vhost); null when not enrolled.
    std::function<lws_vhost*()> vhost;
    // Sends shadow_stop to the server (when the channel is up).
    std::function<void(const protocol::ShadowStop&)> send_stop;
    std::function<void(platform::Logind::SessionDone)> find_session;
    // The sessions changed (status line, status file).
    std::function<void()> changed;
  };

  // `config` is the agent's configuration object, read at each request (it may be replaced
  // by a reload in between).
  ShadowSupervisor(lws_context* ctx, const Config& config, std::string self_exe, Hooks hooks);
  ~ShadowSupervisor();
  ShadowSupervisor(const ShadowSupervisor&) = delete;
  ShadowSupervisor& operator=(const ShadowSupervisor&) = delete;

  void start(const protocol::ShadowStart& request, ShadowSession::Answer answer);
  // The server ended the session (reason admin or server_stopping): nothing is echoed back.
  void stop(const protocol::ShadowStop& stop);
  // Ends the session now (agent stopping, channel gone). `tell_server`: send shadow_stop.
  void stop_all(const std::string& reason, bool tell_server = true);
  // Destroys the session at once (its vhost is about to go away): children killed, reaped.
  void abort_all();

  [[nodiscard]] int running_sessions() const;
  [[nodiscard]] bool idle() const noexcept { return !session_; }
  // "" when no session.
  [[nodiscard]] std::string describe() const;
  // How the last accepted session ended: "session ID ended (REASON): MESSAGE", "" if none.
  [[nodiscard]] const std::string& last_ended() const noexcept { return last_ended_; }
  // Sessions ended since start, by their shadow_stop reason (metrics).
  [[nodiscard]] const std::map<std::string, std::uint64_t>& ended_counts() const noexcept {
    return ended_counts_;
  }

  // Called once (then cleared) when the last session is gone.
  std::function<void()> on_idle;

  // The environment a session would get now (paths resolved); exposed for tests and status.
  [[nodiscard]] ShadowEnvironment environment() const;

 private:
  void on_finished();

  lws_context* ctx_;
  const Config& config_;
  std::string self_exe_;
  Hooks hooks_;
  std::unique_ptr<ShadowSession> session_;
  std::unique_ptr<ShadowSession> finished_session_;
  std::string last_ended_;
  std::map<std::string, std::uint64_t> ended_counts_;
  LwsTimer reap_timer_;
};

}  // namespace tether::agent
