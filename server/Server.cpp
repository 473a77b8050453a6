#include "server/Server.h"

#include <algorithm>
#include <ctime>
#include <exception>
#include <limits>

#include "common/FileIo.h"
#include "common/Log.h"
#include "protocol/EnrollmentToken.h"
#include "server/StoreFactory.h"

namespace tether::server {
namespace {

using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kTick = 1s;
constexpr auto kShutdownGrace = 3s;
// Scale-out: how often the leading instance looks for audit rows of lost sessions, and how old
// a row must be (its request) so that an instance that has just made it is not raced.
constexpr auto kAuditSweepInterval = 60s;
constexpr auto kAuditSweepMargin = 120s;
constexpr auto kResponseWaitMargin = 5s;
// Used or expired tokens are kept this long for the record, then forgotten.
constexpr std::int64_t kTokenRetentionSeconds = 7 * 86400;

bool is_any(const std::string& host) {
  return host == "0.0.0.0" || host == "::";
}

std::vector<std::string> server_names(const ServerSettings& settings) {
  std::vector<std::string> names = {"localhost", "127.0.0.1", "::1", local_hostname()};
  if (auto url = protocol::parse_server_url(settings.public_url); url.ok()) {
    names.push_back(url->host);
  }
  if (!is_any(settings.listen.host)) names.push_back(settings.listen.host);
  names.insert(names.end(), settings.extra_names.begin(), settings.extra_names.end());
  return names;
}

}  // namespace

Server::Server(ServerSettings settings) : settings_(std::move(settings)) {}

Server::~Server() {
  loop_.reset();
  if (lan_) lan_->stop();
  // Its timers and links live on the listener's context.
  connector_.reset();
  channels_.set(https_.get(), nullptr);
  // The listener's close callbacks reach into the hub: tear it down while the hub exists.
  if (https_) https_->stop();
}

void Server::request_stop() noexcept {
  DaemonLoop::request_stop();
}

Result<std::unique_ptr<Server>> Server::create(const ServerSettings& settings) {
  std::unique_ptr<Server> server(new Server(settings));
  const std::string& dir = settings.state_dir;
  TETHER_TRY(ensure_directory(dir, 0700));

  CertificateAuthorityOptions ca_options;
  ca_options.state_dir = dir;
  ca_options.server_names = server_names(settings);
  ca_options.server_cert_lifetime = settings.server_cert_lifetime;
  ca_options.device_cert_lifetime = settings.device_cert_lifetime;
  CertificateAuthority::OpenReport report;
  TETHER_ASSIGN_OR_RETURN(auto ca, CertificateAuthority::open(ca_options, &report));
  server->ca_ = std::make_unique<CertificateAuthority>(std::move(ca));
  if (report.created_ca) {
    log::notice("created the installation CA: " + server->ca_->ca_certificate_path() +
                " (SHA-256 fingerprint " + server->ca_->ca_fingerprint() + ")");
  }
  if (!report.clock_problem.empty()) log::warning(report.clock_problem);
  if (report.issued_server_certificate) {
    log::notice("issued the server certificate " + server->ca_->server_certificate_path() + " (" +
                report.server_certificate_reason + ")");
  }
  if (report.issued_link_certificate) {
    log::notice("issued the link certificate " + server->ca_->link_certificate_path() + " (" +
                report.link_certificate_reason + ")");
  }

  bool token_created = false;
  const std::string token_path = dir + "/admin.token";
  TETHER_ASSIGN_OR_RETURN(AdminToken admin, AdminToken::load_or_create(token_path, token_created));
  if (token_created) {
    log::notice("created the admin API token: " + token_path + " (tetherctl reads it)");
  }
  TETHER_ASSIGN_OR_RETURN(
      server->metrics_endpoint_,
      MetricsEndpoint::open(dir, server->metrics_.registry(), admin, token_created));
  if (token_created) {
    log::notice("created the metrics token: " + server->metrics_endpoint_->token_path() +
                " (GET /metrics; docs/metrics.md)");
  }

  TETHER_ASSIGN_OR_RETURN(OpenedStore opened, open_store(settings.store_url, dir));
  log::notice("store: " + opened.description);
  server->store_ = std::move(opened.store);
  if (auto purged = server->store_->purge_enrollment_tokens(
          static_cast<std::int64_t>(std::time(nullptr)) - kTokenRetentionSeconds);
      !purged.ok()) {
    log::warning("cannot purge old enrollment tokens: " + purged.error().message);
  }

  EnrollmentSettings enroll;
  enroll.server_url = settings.public_url;
  enroll.default_token_ttl = settings.token_ttl;
  enroll.rate_per_minute = settings.enroll_rate_per_minute;
  server->enrollment_ = std::make_unique<EnrollmentService>(*server->store_, *server->ca_, enroll);

  HttpsServerOptions https;
  https.listen = settings.listen;
  https.certificate_path = server->ca_->server_certificate_path();
  https.key_path = server->ca_->server_key_path();
  https.client_ca_pems = server->ca_->trusted_pems();
  https.ping_interval = settings.ping_interval;
  // Above the hub's request timeout (expired by the one-second tick), so that a device that
  // does not answer gets the hub's precise 504 first; this is the backstop.
  https.max_response_wait = settings.request_timeout + kResponseWaitMargin;
  server->https_ = std::make_unique<HttpsServer>(https);

  HubSettings hub;
  hub.status_interval = settings.status_interval;
  hub.request_timeout = settings.request_timeout;
  server->hub_ = std::make_unique<DeviceHub>(*server->store_, *server->ca_, server->channels_, hub);
  // The devices the REST API and the LAN features see: this instance's, or every instance's.
  LiveDevices* live = server->hub_.get();
  if (is_postgres_url(settings.store_url)) {
    PgClusterSettings cluster;
    cluster.url = settings.store_url;
    cluster.public_url = settings.public_url;
    TETHER_ASSIGN_OR_RETURN(server->bus_, PgClusterBus::open(cluster));
    ClusterDevicesSettings routing;
    routing.request_timeout = settings.request_timeout;
    server->cluster_ = std::make_unique<ClusterDevices>(*server->hub_, *server->bus_, routing);
    live = server->cluster_.get();
    log::notice("scale-out: this is server instance " + server->bus_->instance_id() + " (" +
                settings.public_url + ")");
  }
  GatewayConnectorSettings connector;
  connector.link_certificate_path = server->ca_->link_certificate_path();
  connector.link_key_path = server->ca_->link_key_path();
  connector.ca_path = server->ca_->ca_certificate_path();
  connector.ping_interval_s = static_cast<std::uint16_t>(
      std::clamp<std::int64_t>(settings.ping_interval.count(), 1, 32767));
  server->connector_ =
      std::make_unique<GatewayConnector>(*server->store_, *server->hub_, connector);
  server->channels_.set(server->https_.get(), server->connector_.get());
  UserApiSettings users;
  users.session_ttl = settings.web_session_ttl;
  users.login_rate_per_minute = settings.login_rate_per_minute;
  server->users_ = std::make_unique<UserApi>(*server->store_, admin, users);
  server->web_ = std::make_unique<WebApp>(WebAppSettings{settings.web_root, settings.novnc_root});
  if (!file_exists(settings.web_root + "/index.html")) {
    log::warning("web.root " + settings.web_root + " has no index.html: no web app");
  } else if (!file_exists(settings.novnc_root + "/core/rfb.js")) {
    log::warning("web.novnc_root " + settings.novnc_root +
                 " has no core/rfb.js (Debian package novnc): the browser viewer will not load");
  }
  server->rest_ =
      std::make_unique<RestApi>(*server->store_, *server->enrollment_, *live, std::move(admin));
  server->rest_->set_user_api(server->users_.get());
  GatewayApiSettings gateways;
  gateways.server_url = settings.public_url;
  gateways.default_join_ttl = settings.token_ttl;
  gateways.join_rate_per_minute = settings.enroll_rate_per_minute;
  server->gateways_ = std::make_unique<GatewayApi>(*server->store_, *server->ca_, gateways);
  server->rest_->set_gateway_api(server->gateways_.get());
  LanSettings lan;
  lan.state_dir = dir;
  lan.listen_host = settings.listen.host;
  lan.registration_port = settings.registration_port;
  lan.device_port = settings.discovery_device_port;
  lan.ca_fingerprint_hex = server->ca_->ca_fingerprint();
  lan.registration_rate_per_minute = settings.enroll_rate_per_minute;
  lan.online_check_interval = settings.online_check_interval;
  lan.wake_rate = settings.wake_rate;
  server->lan_ = std::make_unique<LanDiscovery>(lan, *server->store_, *server->enrollment_, *live);
  server->rest_->set_lan(server->lan_.get());

  ShadowSettings shadow;
  shadow.token_ttl = settings.shadow_token_ttl;
  shadow.max_sessions = settings.shadow_max_sessions;
  shadow.public_url = settings.public_url;
  DeviceHub* hub_ptr = server->hub_.get();
  server->shadow_ = std::make_unique<ShadowService>(
      *server->store_, *server->hub_,
      [hub_ptr](const std::string& id, const protocol::UpBody& body) {
        return hub_ptr->notify(id, body);
      },
      shadow);
  server->shadow_->set_gateways(server->connector_.get());
  server->relay_ = std::make_unique<TunnelRelay>(*server->shadow_);
  server->rest_->set_shadow_service(server->shadow_.get());
  server->metrics_.attach(*server->https_, *server->hub_, *server->enrollment_, *server->shadow_,
                          *server->relay_, *server->lan_, *server->connector_);
  if (server->cluster_) {
    const ClusterDevices* cluster = server->cluster_.get();
    const PgClusterBus* bus = server->bus_.get();
    const GatewayConnector* links = server->connector_.get();
    auto& registry = server->metrics_.registry();
    registry.add_callback(
        "tether_cluster_requests_total",
        "Requests (commands, shadowing starts) between server instances, by direction: "
        "forwarded (to the instance holding the device), served (for another instance).",
        MetricType::kCounter, {"direction"}, [cluster] {
          return std::vector<MetricsRegistry::Sample>{
              {{"forwarded"}, static_cast<double>(cluster->counters().forwarded)},
              {{"served"}, static_cast<double>(cluster->counters().served_for_peers)}};
        });
    registry.add_callback(
        "tether_cluster_forward_failures_total",
        "Requests to other instances that failed (no answer in time, database refused, "
        "message not understood).",
        MetricType::kCounter, {}, [cluster] {
          return std::vector<MetricsRegistry::Sample>{
              {{}, static_cast<double>(cluster->counters().forward_failures)}};
        });
    registry.add_callback_gauge("tether_cluster_database_up",
                                "1 while the cluster's database connection is up.",
                                [bus] { return bus->connected() ? 1.0 : 0.0; });
    registry.add_callback_gauge("tether_cluster_gateway_leader",
                                "1 on the instance that links to the gateways.",
                                [links] { return links->active() ? 1.0 : 0.0; });
  }

  Server* self = server.get();
  server->https_->set_hub(server->hub_.get());
  server->https_->set_tunnel_relay(server->relay_.get());
  server->hub_->set_shadow_stop_handler(
      [self](const std::string& device_id, const protocol::ShadowStop& stop) {
        self->shadow_->on_device_stop(device_id, stop);
      });
  if (server->cluster_) {
    ClusterDevices* cluster = server->cluster_.get();
    server->hub_->set_presence_handler(
        [cluster](const std::string& id, const std::optional<std::string>& via) {
          cluster->on_presence(id, via);
        });
    server->bus_->set_receiver(
        [cluster](const std::string& message) { cluster->on_message(message); });
    server->bus_->set_rejoin_handler([cluster] { cluster->republish(); });
    server->bus_->set_problem_handler(
        [](const std::string& problem) { log::warning("scale-out: " + problem); });
    cluster->set_shadow_starter(
        [self](const ShadowService::StartRequest& request, HttpRespond respond) {
          self->shadow_->start(request, std::move(respond));
        });
    server->shadow_->set_start_forwarder(
        [cluster](const ShadowService::StartRequest& request, HttpRespond& respond) {
          return cluster->forward_shadow_start(request, respond);
        });
    server->shadow_->set_peer_origin(
        [cluster](const std::string& origin) { return cluster->peer_origin(origin); });
    // The shadowing sessions of all instances: listed and ended from any of them.
    cluster->set_local_answer(
        [self](const std::string& what, const nlohmann::json& args) -> nlohmann::json {
          if (what == "sessions") return self->shadow_->local_sessions_json();
          if (what == "session_end") {
            const auto session = args.find("session");
            return session != args.end() && session->is_string() &&
                   self->shadow_->end_by_admin(session->get<std::string>());
          }
          return nullptr;
        });
    ShadowService::PeerSessions peers;
    peers.list = [cluster](std::function<void(nlohmann::json)> done) {
      cluster->gather("sessions", nlohmann::json::object(),
                      [done = std::move(done)](ClusterDevices::Gathered gathered) {
                        nlohmann::json all = nlohmann::json::array();
                        for (auto& answer : gathered.answers) {
                          if (!answer.is_array()) continue;
                          for (auto& session : answer) all.push_back(std::move(session));
                        }
                        done(std::move(all));
                      });
    };
    peers.end = [cluster](const std::string& session, std::function<void(bool)> done) {
      cluster->gather("session_end", {{"session", session}},
                      [done = std::move(done)](ClusterDevices::Gathered gathered) {
                        const auto& answers = gathered.answers;
                        done(std::any_of(answers.begin(), answers.end(), [](const auto& a) {
                          return a.is_boolean() && a.template get<bool>();
                        }));
                      });
    };
    server->shadow_->set_peer_sessions(std::move(peers));
  }
  server->https_->set_http_handler([self](const HttpRequest& request, HttpRespond respond) {
    if (MetricsEndpoint::owns(request)) {
      respond(self->metrics_endpoint_->serve(request));
      return;
    }
    if (WebApp::owns(request.path)) {
      respond(self->web_->serve(request));
      return;
    }
    self->rest_->handle(request, std::move(respond));
  });
  server->loop_ = std::make_unique<DaemonLoop>(
      kTick, kShutdownGrace,
      DaemonLoop::Hooks{[self] { self->on_tick(); }, [self] { self->begin_shutdown(); },
                        [self] { return self->drained(); }});
  server->https_->set_wake_handler([self] { self->loop_->on_wake(); });
  // Devices behind gateways: what each gateway may admit, enrollments passed on by them, and
  // the events of tunnels they splice.
  server->rest_->set_device_hooks(
      [self](const std::string& id) { self->connector_->device_allowed(id); },
      [self](const std::string& id) { self->connector_->device_revoked(id); });
  server->gateways_->set_on_gateways_changed([self] { self->connector_->reload(); });
  server->gateways_->set_link_info([self](const std::string& name) {
    const GatewayLinkState state = self->connector_->link_state(name);
    return GatewayLinkInfo{state.state, state.devices};
  });
  server->connector_->set_http_handler([self](const HttpRequest& request, HttpRespond respond) {
    self->rest_->handle(request, std::move(respond));
  });
  server->connector_->set_tunnel_event_handler(
      [self](const std::string& gateway, const protocol::LinkTunnelEvent& event) {
        self->shadow_->on_gateway_tunnel_event(gateway, event.session, event.event, event.reason);
      });
  return server;
}

int Server::run() {
  DaemonLoop::install_signal_handlers();

  if (auto started = https_->start(); !started.ok()) {
    log::error(started.error().message);
    return 1;
  }
  if (bus_) {
    if (auto watched = bus_->start(https_->context()); !watched.ok()) {
      log::error("scale-out: " + watched.error().message);
      return 1;
    }
  }
  if (auto lan = lan_->start(https_->context()); !lan.ok()) {
    log::warning("LAN features (scan, online check, wake) are off: " + lan.error().message);
    lan_->stop();
  }
  // Scale-out: the gateways are linked by one instance at a time (on_tick takes over).
  if (bus_) {
    connector_->set_active(bus_->lead_gateways());
    log::notice(connector_->active() ? "scale-out: this instance links to the gateways"
                                     : "scale-out: another instance links to the gateways");
  }
  if (auto links = connector_->start(https_->context()); !links.ok()) {
    log::warning("gateways are off: " + links.error().message);
  }
  // A browser shadowing a device behind a gateway: the server's own leg to the gateway's
  // viewer end, presenting the link certificate.
  if (auto legs =
          relay_->start_client(https_->context(), TunnelClientSettings{ca_->link_certificate_path(),
                                                                       ca_->link_key_path(),
                                                                       ca_->ca_certificate_path()});
      !legs.ok()) {
    log::warning("browsers cannot shadow devices behind gateways: " + legs.error().message);
  }
  log::notice(
      "listening on " +
      (settings_.listen.host.find(':') != std::string::npos ? "[" + settings_.listen.host + "]"
                                                            : settings_.listen.host) +
      ":" + std::to_string(settings_.listen.port) + "; devices use " + settings_.public_url);

  // A server alone: nothing survives its restart, so a session it left open (killed) ended.
  if (!bus_) end_orphaned_audit({}, std::numeric_limits<std::int64_t>::max());
  next_flush_ = SteadyClock::now() + settings_.flush_interval;
  loop_->run(https_->context());
  lan_->stop();
  connector_->stop();
  https_->stop();
  flush_activity();
  log::notice("stopped");
  return 0;
}

// Stopping: the channels close, and the answers to requests that were waiting for a device
// (failed by close_all) go out, within the grace period.
bool Server::drained() const {
  return https_->up_connection_count() == 0 && https_->open_exchange_count() == 0;
}

void Server::begin_shutdown() {
  log::notice("stopping: closing " + std::to_string(https_->up_connection_count()) +
              " device channel(s)");
  shadow_->stop_all();
  // Devices behind gateways stay connected to them; only the links go.
  connector_->stop();
  hub_->close_all(kCloseRestarting, protocol::kRestartCloseReason);
  // The other instances see this one's devices as offline at once (they reconnect there).
  if (bus_) bus_->stop();
  flush_activity();
}

void Server::flush_activity() {
  if (auto flushed = hub_->flush(); !flushed.ok()) {
    log::error("cannot write device activity: " + flushed.error().message);
  }
}

void Server::end_orphaned_audit(const std::vector<std::string>& running,
                                std::int64_t requested_before) {
  auto ended = shadow_->end_orphaned_audit(running, requested_before);
  if (!ended.ok()) {
    log::warning("cannot end the audit rows of lost shadowing sessions: " + ended.error().message);
  } else if (*ended > 0) {
    log::notice("ended the audit rows of " + std::to_string(*ended) +
                " shadowing session(s) lost with a stopped server (server_lost)");
  }
}

void Server::on_tick() {
  // Expiring requests runs the REST API's answers.
  const auto now = SteadyClock::now();
  hub_->expire_requests(now);
  if (bus_) {
    bus_->tick();
    cluster_->tick(now);
    const bool lead = bus_->lead_gateways();
    if (lead != connector_->active()) {
      log::notice(lead ? "scale-out: this instance now links to the gateways"
                       : "scale-out: another instance links to the gateways now");
      connector_->set_active(lead);
    }
    // The leading instance also ends the audit rows of sessions that died with an instance:
    // open rows no live instance runs (all must answer, else next time).
    if (lead && now >= next_audit_sweep_) {
      next_audit_sweep_ = now + kAuditSweepInterval;
      const std::int64_t before =
          static_cast<std::int64_t>(std::time(nullptr)) - kAuditSweepMargin.count();
      cluster_->gather(
          "sessions", nlohmann::json::object(), [this, before](ClusterDevices::Gathered gathered) {
            if (!gathered.complete) return;
            std::vector<std::string> running;
            for (const auto& answer : gathered.answers) {
              if (!answer.is_array()) continue;
              for (const auto& s : answer) {
                if (s.is_object() && s.contains("session") && s["session"].is_string()) {
                  running.push_back(s["session"].get<std::string>());
                }
              }
            }
            end_orphaned_audit(running, before);
          });
    }
  }
  shadow_->expire(now);
  if (now >= next_flush_) {
    flush_activity();
    next_flush_ = now + settings_.flush_interval;
  }
}

}  // namespace tether::server
