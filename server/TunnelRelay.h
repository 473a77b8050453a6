// The libwebsockets side of the shadowing relay (docs/protocol.md §5): the WebSocket
// protocols "tether.tunnel.v1" and "binary" on the HTTPS server's vhost, at
// /tunnel/device/SESSION and /tunnel/viewer/SESSION. It admits an end at the upgrade (token,
// Origin, the device's certificate; refusals are HTTP 403), then passes bytes, writability
// and closes between lws and ShadowService, which decides everything. It never owns a wsi:
// pointers live only between an end's ESTABLISHED and CLOSED callbacks.
#pragma once

#include <libwebsockets.h>

#include <array>
#include <optional>
#include <string>
#include <unordered_map>

#include "server/ShadowService.h"

namespace tether::server {

inline constexpr const char* kTunnelSubprotocol = "tether.tunnel.v1";
inline constexpr const char* kBinarySubprotocol = "binary";  // noVNC's

// Where a tunnel URI points: /tunnel/device/ID or /tunnel/viewer/ID.
struct TunnelTarget {
  TunnelEnd end = TunnelEnd::kViewer;
  std::string session_id;
};
[[nodiscard]] std::optional<TunnelTarget> parse_tunnel_path(const std::string& path);

class TunnelRelay final : public TunnelTransport {
 public:
  explicit TunnelRelay(ShadowService& shadow);
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

  void request_writable(const std::string& session, TunnelEnd end) override;
  void set_receiving(const std::string& session, TunnelEnd end, bool receiving) override;
  [[nodiscard]] std::size_t open_ends() const noexcept;

 private:
  // Why the end on this (upgrading) connection may not join; ok when it may. Consumes the
  // token when `use_token`.
  Status admit(lws* wsi, const TunnelTarget& target, bool use_token);
  lws* wsi_of(const std::string& session, TunnelEnd end) const;

  ShadowService& shadow_;
  std::unordered_map<std::string, std::array<lws*, 2>> ends_;
};

}  // namespace tether::server
