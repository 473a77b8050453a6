// The libwebsockets side of the shadowing relay (docs/protocol.md §5): the WebSocket
// protocols "tether.tunnel.v1" and "binary" on the HTTPS server's vhost, at
// /tunnel/device/SESSION and /tunnel/viewer/SESSION. It admits an end at the upgrade (token,
// Origin, the device's certificate; refusals are HTTP 403), then passes bytes, writability
// and closes between lws and the session owner (TunnelSessions: the server's ShadowService,
// the gateway's GatewayTunnels), which decides everything. On the server it also opens the
// outbound end of a browser's session over a gateway (a client WebSocket to the gateway's
// viewer end, on a client vhost of its own with the link certificate), which stands in for
// the session's device end. It never owns a wsi: pointers live only between an end's
// ESTABLISHED and CLOSED callbacks.
#pragma once

#include <libwebsockets.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/MetricsRegistry.h"
#include "common/Result.h"
#include "server/TunnelSessions.h"

namespace tether::server {

inline constexpr const char* kTunnelSubprotocol = "tether.tunnel.v1";
inline constexpr const char* kBinarySubprotocol = "binary";  // noVNC's

// Where a tunnel URI points: /tunnel/device/ID or /tunnel/viewer/ID.
struct TunnelTarget {
  TunnelEnd end = TunnelEnd::kViewer;
  std::string session_id;
};
[[nodiscard]] std::optional<TunnelTarget> parse_tunnel_path(const std::string& path);

// wss://HOST[:PORT]/PATH[?QUERY], split for lws_client_connect_via_info.
struct TunnelClientUrl {
  std::string host;  // without brackets
  std::uint16_t port = 443;
  std::string path;  // path and query
};
[[nodiscard]] Result<TunnelClientUrl> parse_tunnel_client_url(std::string_view url);

// The TLS identity of the relay's outbound ends (the server's legs to gateways).
struct TunnelClientSettings {
  std::string certificate_path;  // client certificate, leaf then CA (the link certificate)
  std::string key_path;
  std::string ca_path;  // the CA(s) the gateway's certificate must chain to
};

class TunnelRelay final : public TunnelTransport {
 public:
  explicit TunnelRelay(TunnelSessions& sessions);
  ~TunnelRelay() override;
  TunnelRelay(const TunnelRelay&) = delete;
  TunnelRelay& operator=(const TunnelRelay&) = delete;

  // For the HTTP protocol's LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: 0 lets the upgrade go on (not
  // a tunnel path, or the end may join); 1 when it answered 403 itself.
  int confirm_upgrade(lws* wsi);
  // The callback of both tunnel protocols.
  int on_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len);

  struct EndData {  // per-session data lws allocates (zeroed) for each tunnel WebSocket
    char session[48];
    int end;
    bool joined;
  };

  // Makes connect_device_end possible: a client vhost on `context` (which must outlive this
  // relay's use of it) presenting `settings`' certificate and trusting only its CA file.
  [[nodiscard]] Status start_client(lws_context* context, const TunnelClientSettings& settings);

  void request_writable(const std::string& session, TunnelEnd end) override;
  void set_receiving(const std::string& session, TunnelEnd end, bool receiving) override;
  [[nodiscard]] Status connect_device_end(const std::string& session,
                                          const std::string& url) override;
  // Registers tether_tunnel_relayed_bytes_total{direction} (bytes received from one end
  // for the other) in `registry`, which must outlive this relay.
  void set_metrics(MetricsRegistry& registry);
  [[nodiscard]] std::size_t open_ends() const noexcept;
  // Outbound ends connecting or open.
  [[nodiscard]] std::size_t client_ends() const noexcept { return clients_.size(); }

 private:
  struct ClientEnd {  // an outbound end, from connect to its close (lws opaque user data)
    std::string session;
    lws* wsi = nullptr;
    bool established = false;
    std::string error;  // a connection error while connect_device_end runs
  };
  static int client_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                             std::size_t len);
  int on_client(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len);
  // The outbound end is gone before it opened: forget it and tell the sessions (unless
  // connect_device_end is still running: it answers itself).
  void client_failed(lws* wsi, ClientEnd* end, const std::string& why);
  // Writes what the session has for this end; -1 closes the connection.
  int write_end(lws* wsi, const std::string& session, TunnelEnd end);
  void end_closed(lws* wsi, const std::string& session, TunnelEnd end);
  // Why the end on this (upgrading) connection may not join; ok when it may. Consumes the
  // token when `use_token`.
  Status admit(lws* wsi, const TunnelTarget& target, bool use_token);
  lws* wsi_of(const std::string& session, TunnelEnd end) const;

  TunnelSessions& sessions_;
  std::unordered_map<std::string, std::array<lws*, 2>> ends_;
  lws_context* client_context_ = nullptr;
  lws_vhost* client_vhost_ = nullptr;
  TunnelClientSettings client_settings_;
  lws_protocols client_protocols_[2]{};
  std::unordered_map<ClientEnd*, std::unique_ptr<ClientEnd>> clients_;
  bool in_connect_ = false;
  std::vector<unsigned char> write_buf_;  // LWS_PRE + the message being written
  Counter relayed_[2];                    // bytes received from the device / viewer end
};

}  // namespace tether::server
