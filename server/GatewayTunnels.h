// The gateway's shadowing sessions (docs/protocol.md §5, "Tunnels over a gateway"): the
// server opens a session on its link (id, device, two single-use tokens, a time to live);
// the device's tunnel and the viewer's WebSocket (tetherctl, or the server's own leg for a
// browser) join at the gateway's /tunnel/device/ID and /tunnel/viewer/ID, and are spliced
// with the server's rules (TunnelSplice: bounded messages and queues, flow control). What
// happens is reported to the server as events, each once and in order:
//   device_joined, viewer_joined (either order), spliced, ended (with its reason:
//   viewer_closed, device_closed, timeout, closed_by_server, gateway_stopping).
// No sockets here: TunnelRelay drives it through TunnelSessions, the tests through plain calls.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/Result.h"
#include "server/TunnelSessions.h"
#include "server/TunnelSplice.h"

namespace tether::server {

// The server's tunnel_open: what the gateway needs to admit the two ends.
struct GatewayTunnelOpen {
  std::string session_id;        // base64url, at most 40 characters
  std::string device_id;         // 64 hex digits: the device certificate's id
  std::string device_token;      // single-use, for /tunnel/device/ID
  std::string viewer_token;      // single-use, for /tunnel/viewer/ID
  std::chrono::seconds ttl{30};  // for both ends to arrive, from open()
};

struct GatewayTunnelsSettings {
  std::size_t max_sessions = 100;
  TunnelLimits limits;
};

class GatewayTunnels final : public TunnelSessions {
 public:
  using SteadyClock = std::chrono::steady_clock;
  // (session, event, reason); reason is "" but for "ended".
  using EventHandler = std::function<void(const std::string& session, const std::string& event,
                                          const std::string& reason)>;

  explicit GatewayTunnels(GatewayTunnelsSettings settings = {});
  ~GatewayTunnels() override;
  GatewayTunnels(const GatewayTunnels&) = delete;
  GatewayTunnels& operator=(const GatewayTunnels&) = delete;

  // A new session. Errors: a duplicate id, malformed values, max_sessions reached.
  [[nodiscard]] Status open(const GatewayTunnelOpen& open);
  // The server asked: the session ends ("closed_by_server"); its open ends get what is queued
  // toward them and are closed with 1000 and `reason`. Unknown sessions are ignored.
  void close(const std::string& session_id, const std::string& reason);
  // Sessions whose ends did not both arrive within their ttl end ("timeout"; an end that
  // came is closed with 4408 "peer did not arrive").
  void expire(SteadyClock::time_point now);
  // The gateway is stopping: every session ends ("gateway_stopping"; ends closed with 1001).
  void stop_all();

  EventHandler on_event;

  [[nodiscard]] std::size_t session_count() const noexcept { return sessions_.size(); }
  [[nodiscard]] bool has_session(const std::string& session_id) const {
    return sessions_.count(session_id) != 0;
  }
  // Bytes written toward `end` so far (0 for an unknown session).
  [[nodiscard]] std::uint64_t bytes_to(const std::string& session_id, TunnelEnd end) const;
  // Bytes queued toward `end`, not yet written (0 for an unknown session).
  [[nodiscard]] std::size_t queued(const std::string& session_id, TunnelEnd end) const;

  // ---- TunnelSessions (TunnelRelay) ----------------------------------------------------
  void set_transport(TunnelTransport* transport) override { transport_ = transport; }
  // Viewers at the gateway are tools (tetherctl) and the server, which send no Origin; a
  // request with one comes from a browser, which must go through the server.
  [[nodiscard]] bool viewer_origin_allowed(const std::optional<std::string>& origin,
                                           const std::string& host) const override;
  [[nodiscard]] Status check_join(const std::string& session_id, TunnelEnd end,
                                  std::string_view token,
                                  const std::string& device_id) const override;
  [[nodiscard]] Status join(const std::string& session_id, TunnelEnd end, std::string_view token,
                            const std::string& device_id) override;
  void opened(const std::string& session_id, TunnelEnd end) override;
  void received(const std::string& session_id, TunnelEnd from, std::string_view bytes) override;
  void received_text(const std::string& session_id, TunnelEnd from) override;
  [[nodiscard]] TunnelSplice::Action take(const std::string& session_id, TunnelEnd end) override;
  void closed(const std::string& session_id, TunnelEnd end) override;

 private:
  struct Session;
  class SessionIo;

  Session* find(const std::string& session_id) const;
  void emit(const std::string& session_id, const std::string& event, const std::string& reason);
  // Decides the end (the first reason wins, reported once as "ended") and closes the open ends.
  void end_session(Session& session, const std::string& reason, int close_code,
                   const std::string& close_text, bool flush);
  // Forgets the session once it is ending and no end is open.
  void finish_if_done(const std::string& session_id);

  GatewayTunnelsSettings settings_;
  TunnelTransport* transport_ = nullptr;
  std::unordered_map<std::string, std::unique_ptr<Session>> sessions_;
};

}  // namespace tether::server
