#include "server/Gateway.h"

#include <exception>

#include "common/FileIo.h"
#include "common/Log.h"
#include "common/Version.h"
#include "platform/Pki.h"

namespace tether::server {
namespace {

using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kTick = 1s;
constexpr auto kShutdownGrace = 3s;
constexpr auto kJoinTimeout = 30s;

// Every certificate of a PEM bundle, one PEM each (the listener's client CAs).
Result<std::vector<std::string>> split_bundle(const std::string& path) {
  TETHER_ASSIGN_OR_RETURN(std::string text, read_file(path));
  TETHER_ASSIGN_OR_RETURN(auto certs, pki::certificates_from_pem(text));
  std::vector<std::string> out;
  for (const auto& cert : certs) {
    TETHER_ASSIGN_OR_RETURN(std::string pem, pki::certificate_to_pem(cert.get()));
    out.push_back(std::move(pem));
  }
  return out;
}

}  // namespace

Gateway::~Gateway() {
  loop_.reset();
  if (https_) https_->stop();
}

void Gateway::request_stop() noexcept {
  DaemonLoop::request_stop();
}

Result<std::unique_ptr<Gateway>> Gateway::create(const GatewaySettings& settings) {
  std::unique_ptr<Gateway> gw(new Gateway(settings));
  const std::string& dir = settings.state_dir;
  auto identity = GatewayIdentity::load(dir);
  if (settings.join_token) {
    if (identity.ok()) {
      log::notice("already joined as gateway " + identity->name + "; --join is not needed now");
    } else if (identity.error().code == Errc::kNotFound) {
      log::info("joining the installation...");
      TETHER_ASSIGN_OR_RETURN(auto joined, join_gateway(dir, *settings.join_token,
                                                        std::chrono::milliseconds(kJoinTimeout)));
      log::notice("joined as gateway " + joined.name + " (server " + joined.server_url +
                  "); devices and the server reach this gateway at " + joined.gateway_url);
      identity = GatewayIdentity::load(dir);
    }
  }
  if (!identity.ok()) return identity.error();
  gw->identity_ = std::move(identity).value();
  bool token_created = false;
  TETHER_ASSIGN_OR_RETURN(
      gw->metrics_endpoint_,
      MetricsEndpoint::open(dir, gw->metrics_.registry(), std::nullopt, token_created));
  if (token_created) {
    log::notice("created the metrics token: " + gw->metrics_endpoint_->token_path() +
                " (GET /metrics; docs/metrics.md)");
  }

  HttpsServerOptions https;
  https.listen = settings.listen;
  https.certificate_path = gw->identity_.paths.certificate;
  https.key_path = gw->identity_.paths.key;
  TETHER_ASSIGN_OR_RETURN(https.client_ca_pems, split_bundle(gw->identity_.paths.ca_bundle));
  https.ping_interval = settings.ping_interval;
  https.max_response_wait = settings.request_timeout + 5s;
  gw->https_ = std::make_unique<HttpsServer>(https);

  GatewayRouterSettings router;
  router.name = gw->identity_.name;
  router.version = kVersion;
  router.max_connections = settings.max_connections;
  router.http_timeout = settings.request_timeout;
  gw->router_ = std::make_unique<GatewayRouter>(*gw->https_, router);

  GatewayTunnelsSettings tunnels;
  tunnels.max_sessions = settings.shadow_max_sessions;
  gw->tunnels_ = std::make_unique<GatewayTunnels>(tunnels);
  gw->relay_ = std::make_unique<TunnelRelay>(*gw->tunnels_);

  Gateway* self = gw.get();
  gw->tunnels_->on_event = [self](const std::string& session, const std::string& event,
                                  const std::string& reason) {
    log::info("tunnel " + session + ": " + event + (reason.empty() ? "" : " (" + reason + ")"));
    if (event == "ended") self->metrics_.tunnel_ended(reason);
    self->router_->tunnel_event(session, event, reason);
  };
  gw->router_->set_tunnel_hooks(GatewayRouter::TunnelHooks{
      .open =
          [self](const protocol::LinkTunnelOpen& m) {
            return self->tunnels_->open(GatewayTunnelOpen{
                m.session, m.device, m.device_token, m.viewer_token, std::chrono::seconds(m.ttl)});
          },
      .close = [self](const std::string& session,
                      const std::string& reason) { self->tunnels_->close(session, reason); },
  });
  gw->https_->set_channel_sink(ChannelKind::kUp, &gw->router_->device_sink());
  gw->https_->set_channel_sink(ChannelKind::kLink, &gw->router_->link_sink());
  gw->https_->set_tunnel_relay(gw->relay_.get());
  gw->metrics_.attach(*gw->https_, *gw->router_, *gw->tunnels_, *gw->relay_);
  gw->https_->set_http_handler([self](const HttpRequest& request, HttpRespond respond) {
    if (MetricsEndpoint::owns(request)) {
      respond(self->metrics_endpoint_->serve(request));
      return;
    }
    self->router_->handle_http(request, std::move(respond));
  });
  gw->loop_ = std::make_unique<DaemonLoop>(
      kTick, kShutdownGrace,
      DaemonLoop::Hooks{[self] { self->on_tick(); }, [self] { self->begin_shutdown(); },
                        [self] { return self->drained(); }});
  gw->https_->set_wake_handler([self] { self->loop_->on_wake(); });
  return gw;
}

int Gateway::run() {
  DaemonLoop::install_signal_handlers();

  if (auto started = https_->start(); !started.ok()) {
    log::error(started.error().message);
    return 1;
  }
  const auto& host = settings_.listen.host;
  log::notice("gateway " + identity_.name + " listening on " +
              (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
              std::to_string(settings_.listen.port) + " (" + identity_.gateway_url +
              "); waiting for the server to connect");

  loop_->run(https_->context());
  https_->stop();
  log::notice("stopped");
  return 0;
}

bool Gateway::drained() const {
  return https_->up_connection_count() == 0 && relay_->open_ends() == 0;
}

void Gateway::begin_shutdown() {
  log::notice("stopping: closing " + std::to_string(router_->device_count()) +
              " device channel(s) and the server's link");
  tunnels_->stop_all();
  router_->close_all();
}

void Gateway::on_tick() {
  const auto now = SteadyClock::now();
  router_->expire(now);
  tunnels_->expire(now);
}

}  // namespace tether::server
