// The device end of a shadowing tunnel (docs/protocol.md §5): a client WebSocket to the
// server's /tunnel/device/SESSION (mutual TLS with the device certificate, subprotocol
// tether.tunnel.v1), bridged to the agent's end of the socketpair whose other end
// tether-vnc serves. Bytes flow both ways in binary messages of at most 64 KiB; each
// direction holds at most 256 KiB and stops reading its source above that
// (lws_rx_flow_control), so a slow viewer slows tether-vnc and memory stays bounded.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/Result.h"
#include "common/UniqueFd.h"

namespace tether::agent {

struct TunnelEndpoint {
  std::string host;  // without brackets
  std::uint16_t port = 443;
  std::string path;  // path and query, with the token
};

// wss://HOST[:PORT]/PATH[?QUERY] plus the session's device token (appended as `token=`
// unless the URL already carries one).
[[nodiscard]] Result<TunnelEndpoint> parse_tunnel_url(std::string_view url, std::string_view token);

struct BridgeEnd {
  bool tunnel_side = false;  // the tunnel ended first (else the socket did)
  bool tunnel_established = false;
  int close_code = 0;  // from the server's close frame, 0 if none
  std::string close_reason;
  std::string error;
};

class ShadowTunnelListener {
 public:
  virtual ~ShadowTunnelListener() = default;
  // The first bytes from tether-vnc (its RFB greeting): it runs and serves the socket.
  virtual void on_vnc_greeting() = 0;
  virtual void on_tunnel_open() = 0;
  // Once: the socket or the tunnel ended. The owner closes what is left.
  virtual void on_bridge_ended(const BridgeEnd& end) = 0;
  // The tunnel's WebSocket is gone (closed, failed, never opened): idle() is true now.
  virtual void on_tunnel_gone() {}
};

class ShadowTunnel {
 public:
  static constexpr std::size_t kMaxBuffered = 256 * 1024;
  static constexpr std::size_t kMaxMessage = 64 * 1024;

  // Adopts `socket` (the agent's end of the socketpair) into the loop at once. Both
  // protocols must be in `vhost`'s table (tunnel_protocol(), socket_protocol()). The tunnel
  // is kept alive like the UP channel (connection.ping_interval): a ping every
  // `ping_interval`, a hangup when its pong has not come within the next one.
  [[nodiscard]] static Result<std::unique_ptr<ShadowTunnel>> create(
      lws_context* ctx, lws_vhost* vhost, UniqueFd socket, ShadowTunnelListener& listener,
      std::chrono::seconds ping_interval = std::chrono::seconds(30));
  ~ShadowTunnel();
  ShadowTunnel(const ShadowTunnel&) = delete;
  ShadowTunnel& operator=(const ShadowTunnel&) = delete;

  [[nodiscard]] Status connect(const TunnelEndpoint& endpoint);
  // No WebSocket is open or closing (before connect(), or after it ended).
  [[nodiscard]] bool idle() const noexcept { return tunnel_wsi_ == nullptr; }
  // Closes the tunnel (after what is queued toward it, with code and reason) and the socket.
  void close(int code, const std::string& reason);

  [[nodiscard]] std::uint64_t bytes_to_viewer() const noexcept { return bytes_up_; }
  [[nodiscard]] std::uint64_t bytes_from_viewer() const noexcept { return bytes_down_; }

  [[nodiscard]] static lws_protocols tunnel_protocol();
  [[nodiscard]] static lws_protocols socket_protocol();
  static int tunnel_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                             std::size_t len);
  static int socket_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                             std::size_t len);

 private:
  ShadowTunnel(lws_context* ctx, lws_vhost* vhost, ShadowTunnelListener& listener)
      : ctx_(ctx), vhost_(vhost), listener_(listener) {}
  int handle_tunnel(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len);
  int handle_socket(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len);
  void ended(bool tunnel_side, std::string error);
  void detach_tunnel();
  void detach_socket();

  lws_context* ctx_;
  lws_vhost* vhost_;
  ShadowTunnelListener& listener_;
  lws_retry_bo_t idle_policy_{};
  std::string host_;
  std::string host_header_;
  std::string path_;
  lws* tunnel_wsi_ = nullptr;
  lws* socket_wsi_ = nullptr;
  bool established_ = false;
  bool greeted_ = false;
  bool reported_ = false;
  bool socket_paused_ = false;  // not reading tether-vnc: the tunnel's queue is full
  bool tunnel_paused_ = false;  // not reading the tunnel: the socket's queue is full
  std::string to_tunnel_;       // from tether-vnc, not yet sent
  std::string to_socket_;       // from the viewer, not yet written
  int close_code_ = 0;
  std::string close_reason_;
  BridgeEnd end_;
  std::uint64_t bytes_up_ = 0;
  std::uint64_t bytes_down_ = 0;
};

}  // namespace tether::agent
