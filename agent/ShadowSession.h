// One shadowing session on the device, from shadow_start to its end (docs/protocol.md §5):
// find the graphical session (shadow.display, else logind) and its X authority, ask the
// user when policy says so (tether-shadow-ui prompt), spawn tether-vnc as the session's user
// with one end of a socketpair, answer the server once tether-vnc greets, open the tunnel
// and bridge it, show the indicator, and end cleanly for any reason: only this session's
// children are killed (their process groups) and reaped, the tunnel is closed with the
// reason, and the server hears why (shadow_stop) unless it asked for the end itself.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "agent/ChildProcess.h"
#include "agent/ShadowPolicy.h"
#include "agent/ShadowTunnel.h"
#include "common/LwsLoop.h"
#include "platform/Logind.h"
#include "protocol/UpMessage.h"

namespace tether::agent {

struct ShadowEnvironment {
  lws_context* ctx = nullptr;
  // The client vhost: device certificate, the tunnel, socket and fd-watcher protocols.
  lws_vhost* vhost = nullptr;
  std::string vnc_path;
  std::string ui_path;
  std::string display;     // shadow.display; empty: ask logind
  std::string xauthority;  // shadow.xauthority; empty: look in the usual places
  std::chrono::milliseconds max_duration{0};
  std::chrono::milliseconds vnc_start_timeout{15000};
  // connection.ping_interval: the tunnel's keepalive, as the UP channel's.
  std::chrono::seconds ping_interval{30};
  std::function<void(platform::Logind::SessionDone)> find_session;
  std::function<void()> changed;  // the session's state changed (status)
};

class ShadowSession final : public ShadowTunnelListener {
 public:
  using Answer = std::function<void(protocol::ResultBody)>;
  // The session ended after it had been accepted; `stop` is what the server should hear.
  using Ended = std::function<void(const protocol::ShadowStop& stop, bool tell_server)>;
  // Everything (children, tunnel) is gone, or the ending deadline passed: the owner may
  // destroy the session, later (from its own timer), never from inside this call.
  using Finished = std::function<void()>;

  ShadowSession(ShadowEnvironment env, protocol::ShadowStart request, ShadowDecision decision,
                TunnelEndpoint endpoint, Answer answer, Ended ended, Finished finished);
  ~ShadowSession() override;
  ShadowSession(const ShadowSession&) = delete;
  ShadowSession& operator=(const ShadowSession&) = delete;

  void start();
  // Ends the session with `reason` (a shadow_stop reason token). `tell_server` is false when
  // the server asked for the end. Before the answer, the answer becomes a refusal.
  void stop(const std::string& reason, const std::string& message, bool tell_server = true);

  [[nodiscard]] const std::string& id() const noexcept { return request_.session_id; }
  [[nodiscard]] bool running() const noexcept { return state_ == State::kRunning; }
  [[nodiscard]] bool ending() const noexcept { return state_ >= State::kEnding; }
  // One line for `tether-agent status` and the STATUS= line.
  [[nodiscard]] std::string describe() const;

  // ShadowTunnelListener
  void on_vnc_greeting() override;
  void on_tunnel_open() override;
  void on_bridge_ended(const BridgeEnd& end) override;
  void on_tunnel_gone() override { check_finished(); }

 private:
  enum class State { kLocating, kPrompting, kStartingVnc, kRunning, kEnding, kDone };

  void on_session_found(Result<std::optional<platform::GraphicalSession>> found);
  void with_target(ShadowTarget target, pid_t leader);
  void ask_user();
  void on_prompt_exit(int status);
  void start_vnc(const std::string& consent);
  void on_vnc_exit(int status);
  void on_indicator_exit(int status);
  void refuse(const std::string& code, const std::string& message);
  void check_finished();
  void arm_deadline(int what, std::chrono::milliseconds delay);
  void on_deadline();

  ShadowEnvironment env_;
  protocol::ShadowStart request_;
  ShadowDecision decision_;
  TunnelEndpoint endpoint_;
  Answer answer_;
  Ended ended_;
  Finished finished_;
  State state_ = State::kLocating;
  ShadowTarget target_;
  std::string consent_;
  std::unique_ptr<ChildProcess> prompt_;
  std::unique_ptr<ChildProcess> vnc_;
  std::unique_ptr<ChildProcess> indicator_;
  std::unique_ptr<ShadowTunnel> tunnel_;
  // One deadline at a time: the prompt hangs, tether-vnc does not greet, the session's
  // max_duration, the ending takes too long.
  LwsTimer deadline_;
  int deadline_kind_ = 0;
  std::time_t started_ = 0;
  std::time_t accepted_ = 0;
  // Callbacks that may outlive the session (logind) hold a weak_ptr to this.
  std::shared_ptr<ShadowSession*> self_ = std::make_shared<ShadowSession*>(this);
};

}  // namespace tether::agent
