#include "agent/AgentDaemon.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>

#include "common/FileIo.h"
#include "common/Log.h"
#include "common/Version.h"
#include "platform/ClockDiagnosis.h"
#include "protocol/UpMessage.h"

namespace tether::agent {
namespace {

std::atomic<bool> g_terminate{false};
std::atomic<bool> g_reload{false};
std::atomic<bool> g_stall{false};
std::atomic<lws_context*> g_context{nullptr};

extern "C" void on_signal(int sig) {
  if (sig == SIGHUP) {
    g_reload = true;
  } else if (sig == SIGUSR1) {
    g_stall = true;
  } else {
    g_terminate = true;
  }
  if (lws_context* ctx = g_context.load()) lws_cancel_service(ctx);
}

constexpr auto kEnrollmentPoll = std::chrono::seconds(30);

// The agent's lws protocols: control (signals), UP client connections, and fd watchers.
lws_protocols* agent_protocols() {
  static lws_protocols table[] = {
      {"tether-agent-control", &AgentDaemon::control_callback, 0, 0, 0, nullptr, 0},
      {protocol::kUpSubprotocol, &UpConnection::callback, 0, 0, 0, nullptr, 0},
      lws_fd_watcher_protocol(),
      ShadowTunnel::tunnel_protocol(),
      ShadowTunnel::socket_protocol(),
      {nullptr, nullptr, 0, 0, 0, nullptr, 0},
  };
  return table;
}

// Why the enrollment and trust records cannot be used, or "" (none yet is fine).
std::string state_problem(const StatePaths& paths) {
  auto enrollment = load_enrollment(paths);
  if (!enrollment.ok()) return enrollment.error().message;
  auto trust = load_trust(paths);
  if (!trust.ok()) return trust.error().message;
  if (*enrollment && trust->empty()) {
    return paths.trust +
           " is missing: this enrolled device cannot verify its server (restore "
           "it, or enroll again with register --force)";
  }
  return "";
}

// Where this program is (tether-vnc and tether-shadow-ui are looked for beside it).
std::string self_executable() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

// A test hook, inert unless the environment asks for it: SIGUSR1 then blocks the event
// loop for the given number of seconds, so a test can see the watchdog pings stop.
int stall_seconds() {
  const char* v = std::getenv("TETHER_TEST_STALL_ON_SIGUSR1");
  return v != nullptr ? std::atoi(v) : 0;
}

}  // namespace

AgentDaemon::AgentDaemon(ConfigLocation location, Config config, StatePaths paths)
    : location_(std::move(location)), config_(std::move(config)), paths_(std::move(paths)) {}

namespace {

// The settings that shape the UP channel: a change to any of them restarts it.
constexpr const char* kChannelKeys[] = {
    "server.url",
    "server.fallback_urls",
    "server.primary_retry",
    "connection.backoff_base",
    "connection.backoff_cap",
    "connection.restart_spread",
    "connection.ping_interval",
    "connection.connect_timeout",
};

}  // namespace

void AgentDaemon::reload_config() {
  auto next = load_agent_config(location_);
  if (!next.ok()) {
    log::error("configuration not reloaded, keeping the old one: " + next.error().message);
    return;
  }
  apply_config(std::move(next).value());
}

void AgentDaemon::apply_config(Config next) {
  bool channel_changed = false;
  for (const char* key : kChannelKeys) {
    if (next.string(key) != config_.string(key)) channel_changed = true;
  }
  log::Level level = log::Level::kInfo;
  if (log::parse_level(next.string("log.level"), level)) log::set_level(level);
  config_ = std::move(next);
  if (metrics_) {
    metrics_->configure(config_.string("metrics.file"), config_.duration("metrics.interval"));
  }
  if (channel_changed && client_) {
    log::info("connection settings changed: restarting the channel");
    load_enrollment_and_connect(/*restart_channel=*/true);
  }
}

void AgentDaemon::run_command(const protocol::Command& command, CommandDone done) {
  switch (command.name) {
    case protocol::CommandName::kGetSettings: done(describe_settings(location_, config_)); return;
    case protocol::CommandName::kRefreshInventory: done(nlohmann::json::object()); return;
    case protocol::CommandName::kReboot:
    case protocol::CommandName::kPowerOff: {
      const bool reboot = command.name == protocol::CommandName::kReboot;
      const char* action = reboot ? "reboot" : "poweroff";
      auto on_done = [done, action](Status status) {
        if (!status.ok()) {
          done(status.error());
          return;
        }
        log::notice(std::string("logind accepted ") + action);
        done(nlohmann::json{{"action", action}});
      };
      if (reboot) {
        logind_->reboot(std::move(on_done));
      } else {
        logind_->power_off(std::move(on_done));
      }
      return;
    }
  }
  done(make_error(Errc::kUnknownType, "unknown command"));
}

Result<nlohmann::json> AgentDaemon::apply_settings(const protocol::Settings& settings) {
  TETHER_ASSIGN_OR_RETURN(SettingsChange change,
                          apply_server_settings(location_, config_, settings.values));
  nlohmann::json changed = nlohmann::json::object();
  std::string summary;
  for (const auto& [key, values] : change.changed) {
    changed[key] = {{"old", values.first}, {"new", values.second}};
    summary += (summary.empty() ? "" : ", ") + key + "=" + values.second;
  }
  log::info(change.changed.empty() ? std::string("settings from the server: nothing changed")
                                   : "settings from the server applied: " + summary);
  apply_config(std::move(change.config));
  return nlohmann::json{{"changed", changed},
                        {"values", describe_settings(location_, config_)["values"]}};
}

AgentDaemon::~AgentDaemon() {
  // Order: the session and client hold timers and a wsi on the context; the TLS context
  // must outlive the vhost that uses it. Shadowing children are killed and reaped here at the
  // latest.
  metrics_.reset();
  shadow_.reset();
  session_.reset();
  client_.reset();
  enrollment_poll_.reset();
  stop_deadline_.reset();
  watchdog_.reset();
  inventory_.reset();
  discovery_.reset();
  logind_.reset();
  g_context = nullptr;
  context_.reset();
  tls_.reset();
}

int AgentDaemon::control_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                                  std::size_t len) {
  if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) {
    auto* self = static_cast<AgentDaemon*>(lws_context_user(lws_get_context(wsi)));
    if (self != nullptr) self->handle_signals();
    return 0;
  }
  // lws 4.1.6 sends WSI_DESTROY to a vhost's first protocol (this one), not to the wsi's own:
  // an UP connection must hear of it, or one that lws frees without any other callback (a
  // server refusing our certificate after a TLS 1.3 handshake) leaves it a dangling wsi.
  if (reason == LWS_CALLBACK_WSI_DESTROY && lws_get_protocol(wsi) != nullptr &&
      lws_get_protocol(wsi)->callback == &UpConnection::callback) {
    return UpConnection::callback(wsi, reason, user, in, len);
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

Status AgentDaemon::create_loop() {
  lws_context_creation_info info{};
  info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
  // RFC 6455 §8.1: a text message or close reason that is not UTF-8 fails the channel (1007),
  // checked by lws as it arrives (for client connections lws reads this from the context).
  info.options |= LWS_SERVER_OPTION_VALIDATE_UTF8;
  info.user = this;
  info.port = CONTEXT_PORT_NO_LISTEN;
  context_.reset(lws_create_context(&info));
  if (!context_) return make_error(Errc::kInternal, "cannot create the event loop");
  g_context = context_.get();
  return {};
}

void AgentDaemon::handle_signals() {
  if (g_stall.exchange(false)) {
    const int seconds = stall_seconds();
    log::warning("test hook: stalling the event loop for " + std::to_string(seconds) + " s");
    ::sleep(static_cast<unsigned>(seconds));
  }
  if (g_reload.exchange(false) && !stopping_) {
    log::info("reloading (SIGHUP)");
    (void)notifier_.reloading();
    reload_config();
    load_enrollment_and_connect();
    (void)notifier_.ready();
  }
  if (g_terminate.load() && !stopping_) {
    stopping_ = true;
    (void)notifier_.stopping();
    log::info("stopping");
    // A peer that does not answer our close must not hold up the exit.
    stop_deadline_->schedule(std::chrono::seconds(3));
    auto stop_channel = [this] {
      if (client_) {
        client_->stop(1001, "agent stopping");
      } else {
        finish();
      }
    };
    if (shadow_ && !shadow_->idle()) {
      // The helpers get SIGTERM now; the channel closes once the session is gone, so that
      // its shadow_stop (agent_stopping) reaches the server first.
      shadow_->on_idle = stop_channel;
      shadow_->stop_all("agent_stopping");
    } else {
      stop_channel();
    }
  }
}

void AgentDaemon::finish() {
  done_ = true;
  // lws_service() only returns on the next event; wake it so the loop sees done_ now.
  lws_cancel_service(context_.get());
}

void AgentDaemon::start_shadow(const protocol::ShadowStart& start, ShadowAnswer answer) {
  if (!shadow_ || stopping_) {
    protocol::ResultBody r;
    r.ok = false;
    r.error = protocol::RemoteError{"unavailable", "the agent is stopping"};
    answer(std::move(r));
    return;
  }
  shadow_->start(start, std::move(answer));
}

std::optional<protocol::Inventory> AgentDaemon::inventory() {
  if (!inventory_) return std::nullopt;
  return inventory_->collect();
}

void AgentDaemon::publish(const ChannelStatus& status) {
  AgentStatus s;
  s.pid = static_cast<int>(::getpid());
  s.channel = status;
  s.device_name = device_name_;
  if (session_ && session_->next_renewal()) s.next_renewal = *session_->next_renewal();
  if (shadow_) s.shadow = shadow_->describe();
  if (shadow_) s.last_shadow = shadow_->last_ended();
  if (metrics_) metrics_->on_channel(status);
  auto written = write_status_file(paths_, s);
  if (!written.ok()) log::warning("cannot write the status file: " + written.error().message);
  std::string line;
  switch (status.state) {
    case ChannelState::kConnected:
      line = "connected to " + status.endpoint;
      if (status.via_gateway) {
        line +=
            status.server_reachable ? " (a gateway)" : " (a gateway; the server is unavailable)";
      }
      break;
    case ChannelState::kConnecting: line = "connecting to " + status.endpoint; break;
    case ChannelState::kStopped:
      line = enrollment_ ? "stopped" : "not enrolled; waiting for tether-agent register";
      break;
    case ChannelState::kWaiting: {
      const auto wait = std::max<std::int64_t>(0, status.next_attempt - std::time(nullptr));
      line = "waiting " + std::to_string(wait) + " s before reconnecting to " + status.endpoint;
      if (!status.last_error.empty()) {
        log::info(line + " (" + status.last_error + ")");
        line += " (" + status.last_error + ")";
      }
      break;
    }
  }
  if (shadow_ && !shadow_->idle()) line += "; shadowing: " + shadow_->describe();
  (void)notifier_.status(line);
  if (status.state == ChannelState::kStopped && stopping_) finish();
}

Status AgentDaemon::install_certificate(ssl::X509Ptr cert) {
  X509* raw = cert.get();
  TETHER_TRY(identity_->store(paths_, std::move(cert)));
  return tls_->use_certificate(raw);
}

Status AgentDaemon::set_trusted_cas(std::vector<std::string> fingerprints) {
  TETHER_TRY(save_trust(paths_, fingerprints));
  trust_ = std::move(fingerprints);
  tls_->set_pinned(trust_);
  return {};
}

std::string AgentDaemon::channel_ca() const {
  return tls_ ? tls_->verified_ca() : std::string();
}

void AgentDaemon::on_hello_ack(const protocol::HelloAck& ack) {
  device_name_ = ack.device_name;
  if (discovery_) discovery_->on_hello_ack(ack);
}

void AgentDaemon::load_enrollment_and_connect(bool restart_channel) {
  if (discovery_) discovery_->enrollment_changed();
  auto identity = DeviceIdentity::load_or_create(paths_);
  if (!identity.ok()) {
    log::error(identity.error().message);
    return;
  }
  auto enrollment = load_enrollment(paths_);
  if (!enrollment.ok()) {
    log::error(enrollment.error().message);
    return;
  }
  if (!*enrollment) {
    if (!identity_) {
      log::notice("device " + identity->device_id() +
                  " is not enrolled; waiting for `tether-agent register --token ...`");
    }
    identity_ = std::move(identity).value();
    enrollment_poll_->schedule(kEnrollmentPoll);
    publish(ChannelStatus{});  // lets `status` see a running, unenrolled agent
    return;
  }
  auto trust = load_trust(paths_);
  if (!trust.ok()) {
    log::error(trust.error().message);
    return;
  }
  const std::string configured = config_.string("server.url");
  const std::string url_text = configured.empty() ? (*enrollment)->server_url : configured;
  auto endpoints = EndpointList::parse(url_text, config_.string("server.fallback_urls"));
  if (!endpoints.ok()) {
    log::error(endpoints.error().message);
    return;
  }
  std::string endpoint_text;
  for (const auto& u : endpoints->urls()) endpoint_text += (endpoint_text.empty() ? "" : ", ") + u;

  const bool same_identity =
      !restart_channel && identity_ && client_ && identity_->device_id() == identity->device_id();
  identity_ = std::move(identity).value();
  enrollment_ = std::move(enrollment).value();
  trust_ = std::move(trust).value();

  if (same_identity && tls_) {
    // Same key: refresh what may have changed (certificate from `register --force`, trust).
    (void)tls_->use_certificate(identity_->certificate());
    tls_->set_pinned(trust_);
    if (endpoint_ != endpoint_text) {
      endpoint_ = endpoint_text;
      client_->start(std::move(endpoints).value());
    }
    return;
  }

  if (shadow_) shadow_->abort_all();  // its tunnel lives on the vhost that goes now
  session_.reset();
  client_.reset();
  if (client_vhost_ != nullptr) {
    lws_vhost_destroy(client_vhost_);
    client_vhost_ = nullptr;
  }
  auto tls = UpTlsContext::create(identity_->key(), identity_->certificate(), trust_);
  if (!tls.ok()) {
    log::error(tls.error().message);
    return;
  }
  tls_ = std::move(tls).value();

  lws_context_creation_info vinfo{};
  vinfo.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  vinfo.port = CONTEXT_PORT_NO_LISTEN;
  vinfo.vhost_name = "up-client";
  vinfo.protocols = agent_protocols();
  vinfo.provided_client_ssl_ctx = tls_->get();
  client_vhost_ = lws_create_vhost(context_.get(), &vinfo);
  if (client_vhost_ == nullptr) {
    log::error("cannot create the client vhost");
    return;
  }

  UpClientOptions options;
  options.backoff_base = config_.duration("connection.backoff_base");
  options.backoff_cap = config_.duration("connection.backoff_cap");
  options.restart_spread = config_.duration("connection.restart_spread");
  options.connect_timeout = config_.duration("connection.connect_timeout");
  options.ping_interval_s = static_cast<std::uint16_t>(
      std::chrono::duration_cast<std::chrono::seconds>(config_.duration("connection.ping_interval"))
          .count());
  options.primary_retry = config_.duration("server.primary_retry");
  client_ = std::make_unique<UpClient>(context_.get(), client_vhost_, options);
  SessionOptions session_options;
  session_options.capabilities.push_back("wol");  // wake_peer
  session_options.capabilities.push_back("shadow");
  session_ = std::make_unique<AgentSession>(context_.get(), *client_, *this, session_options);
  client_->set_handler(*session_);
  client_->on_status = [this](const ChannelStatus& s) { publish(s); };
  client_->before_connect = [this] {
    if (!tls_->verify_error().empty()) log::warning(tls_->verify_error());
    tls_->clear_verify_error();
  };
  // Our own check of the server's certificate, or the server's alert about ours, in words
  // (a wrong clock makes either fail).
  client_->explain_failure = [this](const std::string& why) {
    if (!tls_->verify_error().empty()) return tls_->verify_error();
    if (!tls_->peer_alert().empty()) {
      std::string clock = pki::peer_clock_diagnosis("alert " + tls_->peer_alert(), "the server");
      if (!clock.empty()) return clock;
      // Under TLS 1.3 the server's refusal of our certificate arrives after our side of the
      // handshake: its alert is the only word of why (lws says "closed before connection").
      return "the server refused this device's certificate (TLS alert: " + tls_->peer_alert() + ")";
    }
    return pki::peer_clock_diagnosis(why, "the server");
  };
  endpoint_ = endpoint_text;
  log::info("device " + identity_->device_id() + " enrolled with " + enrollment_->server_url +
            "; connecting to " + endpoint_);
  client_->start(std::move(endpoints).value());
}

int AgentDaemon::run() {
  auto loop = create_loop();
  if (!loop.ok()) {
    log::error(loop.error().message);
    return 1;
  }
  // The control vhost receives EVENT_WAIT_CANCELLED (signals) and hosts the fd watchers.
  lws_context_creation_info cinfo{};
  cinfo.port = CONTEXT_PORT_NO_LISTEN;
  cinfo.vhost_name = "control";
  cinfo.protocols = agent_protocols();
  lws_vhost* control = lws_create_vhost(context_.get(), &cinfo);
  if (control == nullptr) {
    log::error("cannot create the control vhost");
    return 1;
  }
  stop_deadline_ = std::make_unique<LwsTimer>(context_.get(), [this] { finish(); });
  enrollment_poll_ = std::make_unique<LwsTimer>(context_.get(), [this] {
    if (!client_) load_enrollment_and_connect();
  });

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  if (stall_seconds() > 0) sigaction(SIGUSR1, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto identity = DeviceIdentity::load_or_create(paths_);
  if (!identity.ok()) {
    log::error("cannot start: " + identity.error().message);
    return 1;
  }
  // A damaged enrollment or trust record is not "never enrolled": running on would look like
  // a fresh device (and take a new registration over the old one). Refuse, naming the file.
  if (auto problem = state_problem(paths_); !problem.empty()) {
    log::error("cannot start: " + problem);
    return 1;
  }
  log::info(std::string("tether-agent ") + kVersion + " starting, device " + identity->device_id() +
            ", state in " + paths_.dir);
  logind_ = std::make_unique<LogindBridge>(context_.get(), control);
  if (!logind_->connected()) {
    log::notice("logind is not reachable (" + logind_->connect_error() +
                "): reboot and poweroff will fail");
  }
  inventory_ = std::make_unique<InventoryMonitor>(
      control,
      [this] {
        if (client_) client_->network_changed();
      },
      [this] {
        if (session_) session_->inventory_changed();
      });
  shadow_ = std::make_unique<ShadowSupervisor>(
      context_.get(), config_, self_executable(),
      ShadowSupervisor::Hooks{.vhost = [this] { return client_vhost_; },
                              .send_stop =
                                  [this](const protocol::ShadowStop& stop) {
                                    if (session_) session_->send_shadow_stop(stop);
                                  },
                              .find_session =
                                  [this](platform::Logind::SessionDone done) {
                                    logind_->find_graphical_session(std::move(done));
                                  },
                              .changed = [this] { on_session_changed(); }});
  discovery_ = std::make_unique<AgentDiscovery>(
      context_.get(), control, config_, paths_, identity->device_id(),
      [this] { load_enrollment_and_connect(/*restart_channel=*/true); });
  metrics_ = std::make_unique<AgentMetrics>(
      context_.get(),
      AgentMetricsSources{
          .discovery = [this] { return discovery_ ? discovery_->discovery_counters() : nullptr; },
          .shadow_running = [this] { return shadow_ ? shadow_->running_sessions() : 0; },
          .shadow_ended = [this] { return shadow_ ? &shadow_->ended_counts() : nullptr; }});
  metrics_->configure(config_.string("metrics.file"), config_.duration("metrics.interval"));
  load_enrollment_and_connect();

  // Ready once the identity is loaded and the loop runs; the watchdog is fed from the loop
  // itself, so a stalled loop stops feeding it.
  (void)notifier_.ready();
  if (auto interval = notifier_.watchdog_interval()) {
    watchdog_ = std::make_unique<LwsTimer>(context_.get(), [this, interval] {
      (void)notifier_.watchdog();
      watchdog_->schedule(*interval);
    });
    (void)notifier_.watchdog();
    watchdog_->schedule(*interval);
  }

  while (!done_) {
    if (lws_service(context_.get(), 0) < 0) break;
  }
  if (client_) {
    AgentStatus s;
    s.pid = static_cast<int>(::getpid());
    s.channel = client_->status();
    s.channel.state = ChannelState::kStopped;
    (void)write_status_file(paths_, s);
    if (metrics_) metrics_->on_channel(s.channel);
  }
  log::info("stopped");
  return 0;
}

}  // namespace tether::agent
