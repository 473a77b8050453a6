#include "agent/ShadowSession.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "agent/SystemInfo.h"
#include "common/Log.h"
#include "platform/Pki.h"

namespace tether::agent {
namespace {

constexpr int kPromptAllow = 0;
constexpr int kPromptDeny = 10;
constexpr int kPromptTimeout = 11;
constexpr auto kPromptGrace = std::chrono::seconds(10);
constexpr auto kEndingDeadline = std::chrono::seconds(5);
enum DeadlineKind { kNoDeadline, kPromptDeadline, kVncDeadline, kMaxDuration, kEndingDeadlineKind };

std::chrono::microseconds us(std::chrono::milliseconds ms) {
  return std::chrono::duration_cast<std::chrono::microseconds>(ms);
}

// The user's name, primary group and home from the passwd database.
bool fill_user(uid_t uid, ShadowTarget& t) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return false;
  }
  t.uid = uid;
  t.gid = pw.pw_gid;
  t.user = pw.pw_name;
  t.home = pw.pw_dir;
  return true;
}

// Who owns a local display: the owner of its socket in /tmp/.X11-unix ("" host only).
std::optional<uid_t> display_owner(const std::string& display) {
  if (display.empty() || display[0] != ':') return std::nullopt;
  const std::string number = display.substr(1, display.find('.') - 1);
  if (number.empty() || number.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  struct stat st {};
  if (::stat(("/tmp/.X11-unix/X" + number).c_str(), &st) != 0) return std::nullopt;
  return st.st_uid;
}

bool exited_with(int status, int code) {
  return WIFEXITED(status) && WEXITSTATUS(status) == code;
}

}  // namespace

ShadowSession::ShadowSession(ShadowEnvironment env, protocol::ShadowStart request,
                             ShadowDecision decision, TunnelEndpoint endpoint, Answer answer,
                             Ended ended, Finished finished)
    : env_(std::move(env)),
      request_(std::move(request)),
      decision_(decision),
      endpoint_(std::move(endpoint)),
      answer_(std::move(answer)),
      ended_(std::move(ended)),
      finished_(std::move(finished)),
      deadline_(env_.ctx, [this] { on_deadline(); }),
      started_(std::time(nullptr)) {}

ShadowSession::~ShadowSession() {
  *self_ = nullptr;
  deadline_.cancel();
  // Children are killed (their groups) and reaped by their destructors; the tunnel detaches.
  tunnel_.reset();
  indicator_.reset();
  prompt_.reset();
  vnc_.reset();
}

std::string ShadowSession::describe() const {
  static constexpr const char* kStateNames[] = {"locating the session",
                                                "asking the user",
                                                "starting tether-vnc",
                                                "running",
                                                "ending",
                                                "ended"};
  std::string line = "session " + request_.session_id + " for " + request_.admin + " (" +
                     std::string(protocol::viewer_kind_name(request_.viewer)) + " viewer, " +
                     (decision_.view_only ? "view-only" : "control") +
                     "): " + kStateNames[static_cast<int>(state_)];
  if (state_ == State::kRunning) line += " since " + pki::format_utc(accepted_);
  if (!target_.display.empty()) line += " on " + target_.display;
  return line;
}

void ShadowSession::start() {
  log::info("shadowing " + request_.session_id + " requested by " + request_.admin + " (" +
            std::string(protocol::viewer_kind_name(request_.viewer)) + " viewer" +
            (decision_.view_only ? ", view-only" : "") + ")");
  if (!env_.display.empty()) {
    ShadowTarget t;
    const uid_t uid = display_owner(env_.display).value_or(::getuid());
    if (!fill_user(uid, t)) t.uid = uid;
    t.display = env_.display;
    with_target(std::move(t), 0);
    return;
  }
  if (!env_.find_session) {
    refuse("no_session",
           "no graphical session: logind is not reachable and shadow.display is "
           "not set");
    return;
  }
  std::weak_ptr<ShadowSession*> weak = self_;
  env_.find_session([weak](Result<std::optional<platform::GraphicalSession>> found) {
    auto self = weak.lock();
    if (!self || *self == nullptr) return;
    (*self)->on_session_found(std::move(found));
  });
}

void ShadowSession::on_session_found(Result<std::optional<platform::GraphicalSession>> found) {
  if (state_ != State::kLocating) return;
  if (!found.ok()) {
    refuse("no_session", "cannot ask logind for the graphical session: " + found.error().message);
    return;
  }
  if (!*found) {
    refuse("no_session", "nobody is logged in on a local display (no active seat0 session)");
    return;
  }
  const auto& session = **found;
  if (session.display.empty()) {
    refuse("no_session", "the active session " + session.id + " (" + session.type +
                             ") has no X11 display; only X11 sessions can be shadowed");
    return;
  }
  ShadowTarget t;
  if (!fill_user(session.uid, t)) {
    t.uid = session.uid;
    t.user = session.user;
  }
  t.display = session.display;
  with_target(std::move(t), session.leader);
}

namespace {

std::string either(const std::vector<std::string>& files) {
  std::string out;
  for (const auto& f : files) out += (out.empty() ? "" : " or ") + f;
  return out;
}

}  // namespace

void ShadowSession::with_target(ShadowTarget target, pid_t leader) {
  target_ = std::move(target);
  if (!env_.xauthority.empty()) {
    target_.xauthority = {env_.xauthority};
  } else {
    XauthorityQuery q;
    q.uid = target_.uid;
    q.user = target_.user;
    q.home = target_.home;
    q.display = target_.display;
    q.leader = leader;
    target_.xauthority = find_xauthority(q);
  }
  log::info("shadowing " + request_.session_id + ": display " + target_.display + " of " +
            (target_.user.empty() ? "uid " + std::to_string(target_.uid) : target_.user) +
            (target_.xauthority.empty() ? ", no X authority file"
                                        : ", X authority " + either(target_.xauthority)));
  if (decision_.prompt) {
    ask_user();
  } else {
    start_vnc("not_required");
  }
}

namespace {

SpawnSpec spec_for(const ShadowTarget& t, std::vector<std::string> argv) {
  SpawnSpec spec;
  spec.argv = std::move(argv);
  spec.env = child_environment(t);
  spec.uid = t.uid;
  spec.gid = t.gid;
  spec.user = t.user;
  spec.cwd = t.home.empty() ? "/" : t.home;
  return spec;
}

}  // namespace

void ShadowSession::ask_user() {
  state_ = State::kPrompting;
  const auto timeout = std::chrono::duration_cast<std::chrono::seconds>(
      decision_.prompt_timeout + std::chrono::milliseconds(999));
  auto spec = spec_for(target_, prompt_argv(env_.ui_path, target_, request_.admin, timeout,
                                            decision_.prompt_default_allow, decision_.view_only));
  auto child = ChildProcess::spawn(env_.ctx, env_.vhost, spec,
                                   [this](int status) { on_prompt_exit(status); });
  if (!child.ok()) {
    refuse("no_session", "cannot ask the user: " + child.error().message);
    return;
  }
  prompt_ = std::move(child).value();
  log::info("shadowing " + request_.session_id + ": asking the user on " + target_.display);
  // The prompt counts down by itself; this only catches one that hangs.
  arm_deadline(kPromptDeadline, decision_.prompt_timeout + kPromptGrace);
}

void ShadowSession::arm_deadline(int what, std::chrono::milliseconds delay) {
  deadline_kind_ = what;
  deadline_.schedule(us(delay));
}

void ShadowSession::on_deadline() {
  const int what = std::exchange(deadline_kind_, kNoDeadline);
  switch (what) {
    case kPromptDeadline:
      log::warning("shadowing " + request_.session_id + ": the prompt did not answer in time");
      if (prompt_) prompt_->terminate();
      on_prompt_exit(W_EXITCODE(kPromptTimeout, 0));
      break;
    case kVncDeadline:
      refuse("vnc_failed", "tether-vnc did not start serving within " +
                               std::to_string(env_.vnc_start_timeout.count() / 1000) + " s");
      break;
    case kMaxDuration: stop("max_duration", "the session reached shadow.max_duration"); break;
    case kEndingDeadlineKind:
      if (state_ == State::kEnding) {
        log::warning("shadowing " + request_.session_id +
                     ": helpers still running after the ending deadline; killing them");
        state_ = State::kDone;
        if (finished_) finished_();
      }
      break;
    default: break;
  }
}

void ShadowSession::on_prompt_exit(int status) {
  if (state_ != State::kPrompting) {
    check_finished();
    return;
  }
  deadline_.cancel();
  if (exited_with(status, kPromptAllow)) {
    log::notice("shadowing " + request_.session_id + ": the user allowed it");
    start_vnc("accepted");
  } else if (exited_with(status, kPromptDeny)) {
    refuse("user_denied", "the user on " + target_.display + " refused the request");
  } else if (exited_with(status, kPromptTimeout)) {
    if (decision_.prompt_default_allow) {
      log::notice("shadowing " + request_.session_id +
                  ": the user did not answer; allowed by default (shadow.prompt_default)");
      start_vnc("default_accepted");
    } else {
      refuse("prompt_timeout", "the user did not answer within " +
                                   std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                      decision_.prompt_timeout)
                                                      .count()) +
                                   " s; denied by default (shadow.prompt_default)");
    }
  } else {
    refuse("no_session", "cannot ask the user on " + target_.display + ": the prompt " +
                             ChildProcess::describe_status(status));
  }
}

void ShadowSession::start_vnc(const std::string& consent) {
  consent_ = consent;
  state_ = State::kStartingVnc;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) {
    refuse("vnc_failed", std::string("socketpair: ") + std::strerror(errno));
    return;
  }
  UniqueFd ours(sv[0]);
  UniqueFd theirs(sv[1]);
  // tether-vnc's end must block: it is an ordinary client socket to libvncserver.
  const int flags = ::fcntl(theirs.get(), F_GETFL);
  if (flags >= 0) ::fcntl(theirs.get(), F_SETFL, flags & ~O_NONBLOCK);
  auto tunnel =
      ShadowTunnel::create(env_.ctx, env_.vhost, std::move(ours), *this, env_.ping_interval);
  if (!tunnel.ok()) {
    refuse("vnc_failed", tunnel.error().message);
    return;
  }
  tunnel_ = std::move(tunnel).value();
  VncLaunch launch;
  launch.path = env_.vnc_path;
  launch.fd = 3;
  launch.view_only = decision_.view_only;
  launch.monitor = request_.monitor;
  launch.desktop_name = read_hostname();
  auto spec = spec_for(target_, vnc_argv(launch, target_));
  spec.pass_fd = theirs.get();
  auto child =
      ChildProcess::spawn(env_.ctx, env_.vhost, spec, [this](int status) { on_vnc_exit(status); });
  theirs.reset();  // tether-vnc holds it now; our copy would keep the socket open
  if (!child.ok()) {
    refuse("vnc_failed", child.error().message);
    return;
  }
  vnc_ = std::move(child).value();
  log::info("shadowing " + request_.session_id + ": started tether-vnc (pid " +
            std::to_string(vnc_->pid()) + ")");
  arm_deadline(kVncDeadline, env_.vnc_start_timeout);
}

void ShadowSession::on_vnc_greeting() {
  if (state_ != State::kStartingVnc) return;
  deadline_.cancel();
  state_ = State::kRunning;
  accepted_ = std::time(nullptr);
  if (env_.changed) env_.changed();
  if (answer_) {
    protocol::ResultBody ok;
    ok.data = {{"view_only", decision_.view_only}, {"consent", consent_}};
    auto answer = std::move(answer_);
    answer_ = nullptr;
    answer(std::move(ok));
  }
  log::notice("shadowing " + request_.session_id + " accepted (" + consent_ + ", " +
              (decision_.view_only ? "view-only" : "control") + "); opening the tunnel");
  auto connected = tunnel_->connect(endpoint_);
  if (!connected.ok()) {
    stop("tunnel_lost", connected.error().message);
    return;
  }
  if (state_ != State::kRunning) return;  // the connection failed at once and ended it
  auto indicator = ChildProcess::spawn(
      env_.ctx, env_.vhost,
      spec_for(target_, indicator_argv(env_.ui_path, target_, request_.admin, decision_.view_only)),
      [this](int status) { on_indicator_exit(status); });
  if (indicator.ok()) {
    indicator_ = std::move(indicator).value();
  } else {
    log::warning("shadowing " + request_.session_id +
                 ": cannot show the indicator: " + indicator.error().message);
  }
  if (env_.max_duration.count() > 0) arm_deadline(kMaxDuration, env_.max_duration);
}

void ShadowSession::on_tunnel_open() {
  log::info("shadowing " + request_.session_id + ": tunnel open");
}

void ShadowSession::on_bridge_ended(const BridgeEnd& end) {
  if (state_ == State::kStartingVnc && !end.tunnel_side) {
    return;  // tether-vnc closed its end before greeting: its exit is reported as vnc_failed
  }
  if (state_ != State::kRunning) {
    check_finished();
    return;
  }
  if (!end.tunnel_side) {
    stop("vnc_exited", "tether-vnc closed its connection");
  } else if (end.close_reason == "viewer_closed") {
    stop("viewer_closed", "the viewer left");
  } else {
    std::string why = end.error;
    if (end.close_code != 0) {
      why += " (close " + std::to_string(end.close_code) +
             (end.close_reason.empty() ? "" : " " + end.close_reason) + ")";
    }
    stop("tunnel_lost", why);
  }
}

void ShadowSession::on_vnc_exit(int status) {
  const std::string how = ChildProcess::describe_status(status);
  if (state_ == State::kStartingVnc) {
    refuse("vnc_failed", "tether-vnc " + how +
                             " before serving (its reason is in the agent's "
                             "log)");
  } else if (state_ == State::kRunning) {
    stop("vnc_exited", "tether-vnc " + how);
  } else {
    check_finished();
  }
}

void ShadowSession::on_indicator_exit(int status) {
  if (state_ == State::kRunning) {
    if (exited_with(status, 0)) {
      stop("user", "the user ended the session");
      return;
    }
    log::warning("shadowing " + request_.session_id + ": the indicator " +
                 ChildProcess::describe_status(status));
  }
  check_finished();
}

void ShadowSession::refuse(const std::string& code, const std::string& message) {
  log::notice("shadowing " + request_.session_id + " refused (" + code + "): " + message);
  if (answer_) {
    protocol::ResultBody r;
    r.ok = false;
    r.error = protocol::RemoteError{code, message};
    auto answer = std::move(answer_);
    answer_ = nullptr;
    answer(std::move(r));
  }
  stop(code, message, false);
}

void ShadowSession::stop(const std::string& reason, const std::string& message, bool tell_server) {
  if (state_ >= State::kEnding) return;
  const bool was_running = state_ == State::kRunning;
  if (answer_) {
    // Ended before it was answered (the server cancelled, the agent stops): a refusal.
    protocol::ResultBody r;
    r.ok = false;
    r.error = protocol::RemoteError{reason == "agent_stopping" ? "unavailable" : "cancelled",
                                    message.empty() ? reason : message};
    auto answer = std::move(answer_);
    answer_ = nullptr;
    answer(std::move(r));
  }
  state_ = State::kEnding;
  if (was_running) {
    log::notice("shadowing " + request_.session_id + " ended (" + reason + ")" +
                (message.empty() ? "" : ": " + message));
    if (ended_) ended_(protocol::ShadowStop{request_.session_id, reason, message}, tell_server);
  }
  for (auto* child : {&prompt_, &vnc_, &indicator_}) {
    if (*child) (*child)->terminate();
  }
  if (tunnel_) tunnel_->close(1000, reason);
  arm_deadline(kEndingDeadlineKind,
               std::chrono::duration_cast<std::chrono::milliseconds>(kEndingDeadline));
  check_finished();
}

void ShadowSession::check_finished() {
  if (state_ != State::kEnding) return;
  for (auto* child : {&prompt_, &vnc_, &indicator_}) {
    if (*child && (*child)->running()) return;
  }
  if (tunnel_ && !tunnel_->idle()) return;
  deadline_.cancel();
  state_ = State::kDone;
  if (finished_) finished_();
}

}  // namespace tether::agent
