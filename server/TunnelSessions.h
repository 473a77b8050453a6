// What TunnelRelay (the lws side of a shadowing relay, docs/protocol.md §5) needs from the
// owner of the sessions it splices: admitting an end, the end's bytes, writability and close.
// The server's ShadowService implements it, and so does the gateway's GatewayTunnels; the
// relay itself decides nothing.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/Result.h"
#include "server/TunnelSplice.h"

namespace tether::server {

// The sockets of the tunnel ends, as the session owner sees them (TunnelRelay implements it).
class TunnelTransport {
 public:
  virtual ~TunnelTransport() = default;
  virtual void request_writable(const std::string& session, TunnelEnd end) = 0;
  virtual void set_receiving(const std::string& session, TunnelEnd end, bool receiving) = 0;
  // Opens the session's device end as an outbound client WebSocket to `url`
  // (wss://HOST:PORT/PATH?QUERY, subprotocol tether.tunnel.v1): the server's leg to a
  // gateway's viewer end. When it opens, TunnelSessions::opened(session, kDevice) follows; when
  // it cannot, TunnelSessions::connect_failed. An error here means nothing was started.
  [[nodiscard]] virtual Status connect_device_end(const std::string& session,
                                                  const std::string& url) {
    (void)session;
    (void)url;
    return make_error(Errc::kUnavailable, "this relay cannot open outbound tunnel ends");
  }
};

class TunnelSessions {
 public:
  virtual ~TunnelSessions() = default;

  // The relay registers itself (nullptr when it goes).
  virtual void set_transport(TunnelTransport* transport) = 0;

  // Whether a viewer end may join from a request with this Origin header (nullopt: none)
  // that reached us at `host` (the Host header). Decided before the token is looked at.
  [[nodiscard]] virtual bool viewer_origin_allowed(const std::optional<std::string>& origin,
                                                   const std::string& host) const = 0;
  // Whether an end may join with this token. `device_id` is the client certificate's device
  // ("" when none); the device end must present the session's device. The token is not used.
  [[nodiscard]] virtual Status check_join(const std::string& session_id, TunnelEnd end,
                                          std::string_view token,
                                          const std::string& device_id) const = 0;
  // check_join, then the token is used up.
  [[nodiscard]] virtual Status join(const std::string& session_id, TunnelEnd end,
                                    std::string_view token, const std::string& device_id) = 0;
  // The end's WebSocket is open (after join, or an outbound end connected).
  virtual void opened(const std::string& session_id, TunnelEnd end) = 0;
  virtual void received(const std::string& session_id, TunnelEnd from, std::string_view bytes) = 0;
  virtual void received_text(const std::string& session_id, TunnelEnd from) = 0;
  [[nodiscard]] virtual TunnelSplice::Action take(const std::string& session_id, TunnelEnd end) = 0;
  // The end's WebSocket closed.
  virtual void closed(const std::string& session_id, TunnelEnd end) = 0;
  // An outbound end (TunnelTransport::connect_device_end) did not open.
  virtual void connect_failed(const std::string& session_id, TunnelEnd end,
                              const std::string& why) {
    (void)session_id;
    (void)end;
    (void)why;
  }
};

}  // namespace tether::server
