#include "agent/ShadowSupervisor.h"

#include "common/Log.h"

namespace tether::agent {
namespace {

protocol::ResultBody refusal(const std::string& code, const std::string& message) {
  protocol::ResultBody r;
  r.ok = false;
  r.error = protocol::RemoteError{code, message};
  return r;
}

}  // namespace

ShadowSupervisor::ShadowSupervisor(lws_context* ctx, const Config& config, std::string self_exe,
                                   Hooks hooks)
    : ctx_(ctx),
      config_(config),
      self_exe_(std::move(self_exe)),
      hooks_(std::move(hooks)),
      reap_timer_(ctx, [this] {
        finished_session_.reset();
        if (hooks_.changed) hooks_.changed();
        if (!session_ && on_idle) {
          auto idle = std::move(on_idle);
          on_idle = nullptr;
          idle();
        }
      }) {}

ShadowSupervisor::~ShadowSupervisor() {
  reap_timer_.cancel();
  finished_session_.reset();
  session_.reset();
}

ShadowEnvironment ShadowSupervisor::environment() const {
  ShadowEnvironment env;
  env.ctx = ctx_;
  env.vhost = hooks_.vhost ? hooks_.vhost() : nullptr;
  env.vnc_path = helper_path(config_.string("shadow.vnc_path"), "tether-vnc", self_exe_);
  env.ui_path = helper_path(config_.string("shadow.ui_path"), "tether-shadow-ui", self_exe_);
  env.display = config_.string("shadow.display");
  env.xauthority = config_.string("shadow.xauthority");
  env.max_duration = config_.duration("shadow.max_duration");
  env.ping_interval = std::chrono::duration_cast<std::chrono::seconds>(
      config_.duration("connection.ping_interval"));
  env.find_session = hooks_.find_session;
  env.changed = hooks_.changed;
  return env;
}

void ShadowSupervisor::start(const protocol::ShadowStart& request, ShadowSession::Answer answer) {
  const ShadowDecision decision = decide_shadow(shadow_policy_from_config(config_), request);
  if (!decision.allowed) {
    log::notice("shadowing " + request.session_id + " requested by " + request.admin +
                " refused (policy): " + decision.refusal_message);
    answer(refusal("policy", decision.refusal_message));
    return;
  }
  if (session_ || finished_session_) {
    const std::string what = session_ ? session_->describe() : "a session that is ending";
    log::notice("shadowing " + request.session_id + " refused (busy): " + what);
    answer(refusal("busy", "another shadowing session is running on this device"));
    return;
  }
  auto endpoint = parse_tunnel_url(request.tunnel_url, request.token);
  if (!endpoint.ok()) {
    answer(refusal(std::string(errc_name(endpoint.error().code)), endpoint.error().message));
    return;
  }
  ShadowEnvironment env = environment();
  if (env.vhost == nullptr) {
    answer(refusal("unavailable", "the agent has no connection to open a tunnel on"));
    return;
  }
  session_ = std::make_unique<ShadowSession>(
      std::move(env), request, decision, std::move(endpoint).value(), std::move(answer),
      [this](const protocol::ShadowStop& stop, bool tell_server) {
        // Bounded: reasons beyond the first few dozen distinct ones count as "other".
        const bool known = ended_counts_.count(stop.reason) != 0 || ended_counts_.size() < 32;
        ++ended_counts_[known ? stop.reason : std::string("other")];
        last_ended_ = "session " + stop.session_id + " ended (" + stop.reason + ")" +
                      (stop.message.empty() ? "" : ": " + stop.message.substr(0, 512));
        if (tell_server && hooks_.send_stop) hooks_.send_stop(stop);
        if (hooks_.changed) hooks_.changed();
      },
      [this] { on_finished(); });
  session_->start();
  if (hooks_.changed) hooks_.changed();
}

void ShadowSupervisor::on_finished() {
  // Called from inside the session's callbacks: destroy it later, from our own timer.
  if (!session_) return;
  finished_session_ = std::move(session_);
  reap_timer_.schedule(std::chrono::microseconds(0));
}

void ShadowSupervisor::stop(const protocol::ShadowStop& stop) {
  if (!session_ || session_->id() != stop.session_id) {
    log::debug("shadow_stop for " + stop.session_id + ": no such session here");
    return;
  }
  session_->stop(stop.reason.empty() ? "admin" : stop.reason,
                 stop.message.empty() ? "ended by the server" : stop.message, false);
}

void ShadowSupervisor::stop_all(const std::string& reason, bool tell_server) {
  if (session_) session_->stop(reason, "", tell_server);
}

void ShadowSupervisor::abort_all() {
  stop_all("tunnel_lost");
  reap_timer_.cancel();
  session_.reset();
  finished_session_.reset();
}

int ShadowSupervisor::running_sessions() const {
  return session_ && session_->running() ? 1 : 0;
}

std::string ShadowSupervisor::describe() const {
  return session_ ? session_->describe() : "";
}

}  // namespace tether::agent
