// The server's side of its gateways (docs/protocol.md §6): one outbound WebSocket link to
// each joined gateway (tether.gateway.v1 at wss://GATEWAY/link, the server's link
// certificate as client certificate, the gateway's certificate checked against the CA and
// the gateway URL's host), kept up with capped, jittered retries. Devices behind a gateway
// are channels of the DeviceHub like any other: the connector gives each a connection id of
// its own range and carries its messages over the link, so hello, commands, settings,
// inventory, renewal and shadowing work the same either way. It tells each gateway which
// devices may connect (the whole list when the link opens, then every enrollment and
// revocation), passes on enrollments that reach a gateway, and opens tunnel sessions there.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>

#include "common/LwsLoop.h"
#include "common/Result.h"
#include "protocol/EnrollmentToken.h"
#include "protocol/GatewayLinkMessage.h"
#include "server/ChannelSink.h"
#include "server/DeviceHub.h"
#include "server/HttpMessage.h"
#include "server/ShadowService.h"
#include "server/Store.h"

namespace tether::server {

struct GatewayConnectorSettings {
  std::string link_certificate_path;  // leaf then CA
  std::string link_key_path;
  std::string ca_path;  // the CA the gateways' certificates chain to
  std::chrono::milliseconds retry_base{1000};
  std::chrono::milliseconds retry_cap{30000};
  std::uint16_t ping_interval_s = 30;
  std::size_t max_queued_bytes = 64 * 1024 * 1024;
};

struct GatewayLinkState {
  std::string state = "disconnected";  // "connected", "connecting", "disconnected"
  std::size_t devices = 0;             // device channels through it
  std::string last_error;
};

class GatewayConnector final : public UpTransport, public ShadowGateways {
 public:
  // Connection ids of devices behind gateways start here; the listener's stay below.
  static constexpr ConnectionId kFirstConnection = ConnectionId{1} << 62;
  [[nodiscard]] static bool owns(ConnectionId c) noexcept { return c >= kFirstConnection; }

  GatewayConnector(Store& store, DeviceHub& hub, GatewayConnectorSettings settings);
  ~GatewayConnector() override;
  GatewayConnector(const GatewayConnector&) = delete;
  GatewayConnector& operator=(const GatewayConnector&) = delete;

  // Creates the client vhost on the server's context and connects to the joined gateways.
  [[nodiscard]] Status start(lws_context* context);
  // The set of gateways changed (added, joined, removed): connect or drop links.
  void reload();
  // Closes every link; the channels of devices behind them end in the hub at once (the
  // gateways keep the devices connected and announce them again when the server is back).
  void stop();
  // Scale-out: only one server instance links to the gateways at a time (each gateway keeps
  // one link and the newest wins, so two linking instances would take turns forever).
  // Inactive, it holds no links; made active again, it connects as reload() does.
  void set_active(bool active);
  [[nodiscard]] bool active() const noexcept { return active_; }

  void device_allowed(const std::string& device_id);
  void device_revoked(const std::string& device_id);

  // Where forwarded enrollments go (the REST API).
  void set_http_handler(HttpHandler handler) { http_handler_ = std::move(handler); }
  using TunnelEventHandler =
      std::function<void(const std::string& gateway, const protocol::LinkTunnelEvent&)>;
  void set_tunnel_event_handler(TunnelEventHandler h) { tunnel_event_ = std::move(h); }

  // ShadowGateways: the gateway's URL, and its tunnel sessions.
  [[nodiscard]] std::optional<std::string> gateway_url(const std::string& name) const override;
  bool open_tunnel(const std::string& gateway, const GatewayTunnelOpen& open) override;
  void close_tunnel(const std::string& gateway, const std::string& session_id,
                    const std::string& reason) override;
  // Sends on the gateway's link; false when it is not connected.
  bool send_to(const std::string& gateway, const protocol::LinkMessage& message);
  [[nodiscard]] GatewayLinkState link_state(const std::string& name) const;
  [[nodiscard]] std::size_t connected_links() const;

  void send(ConnectionId connection, std::string text) override;
  void close(ConnectionId connection, int code, const std::string& reason) override;

 private:
  struct Link;

  static int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len);
  int handle(Link& link, lws* wsi, lws_callback_reasons reason, void* in, std::size_t len);
  void connect(Link& link);
  void schedule_retry(Link& link, const std::string& why);
  void link_open(Link& link);
  void link_gone(Link& link, const std::string& why);
  void on_link_message(Link& link, std::string_view text);
  void queue(Link& link, std::string text);
  int write(Link& link, lws* wsi);
  void send_device_list(Link& link);
  void forward_http(Link& link, protocol::LinkHttp request);
  void end_device(Link& link, std::uint64_t gateway_conn);
  void detach(Link& link);
  // Ends the hub channels of the devices routed over `link`; returns how many there were.
  std::size_t end_routed_devices(Link& link);

  Store& store_;
  DeviceHub& hub_;
  GatewayConnectorSettings settings_;
  lws_context* context_ = nullptr;
  lws_vhost* vhost_ = nullptr;
  bool active_ = true;
  lws_protocols protocols_[2]{};
  HttpHandler http_handler_;
  TunnelEventHandler tunnel_event_;
  std::map<std::string, std::unique_ptr<Link>> links_;
  // A routed device's hub connection id → its gateway and the gateway's channel id.
  std::unordered_map<ConnectionId, std::pair<std::string, std::uint64_t>> routes_;
  ConnectionId next_connection_ = kFirstConnection;
  std::mt19937_64 rng_{std::random_device{}()};
  std::shared_ptr<GatewayConnector*> alive_ = std::make_shared<GatewayConnector*>(this);
};

// Sends each connection to its owner: the listener's channels or the gateways'.
class ChannelRouter final : public UpTransport {
 public:
  void set(UpTransport* direct, GatewayConnector* gateways) {
    direct_ = direct;
    gateways_ = gateways;
  }
  void send(ConnectionId c, std::string text) override {
    if (UpTransport* t = owner(c)) t->send(c, std::move(text));
  }
  void close(ConnectionId c, int code, const std::string& reason) override {
    if (UpTransport* t = owner(c)) t->close(c, code, reason);
  }

 private:
  UpTransport* owner(ConnectionId c) const {
    return GatewayConnector::owns(c) ? static_cast<UpTransport*>(gateways_) : direct_;
  }
  UpTransport* direct_ = nullptr;
  GatewayConnector* gateways_ = nullptr;
};

}  // namespace tether::server
