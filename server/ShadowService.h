// Shadowing sessions on the server (docs/protocol.md §5, docs/api.md "Shadowing and audit"):
// creates a session with single-use tokens for the device's tunnel and the viewer's
// WebSocket, asks the device with shadow_start and maps its answer to the REST response,
// admits the two tunnel ends (TunnelRelay asks), splices them (TunnelSplice), ends sessions
// (the admin, the device's shadow_stop, an end closing, an end not arriving in time, the
// server stopping) and writes the audit log. No sockets here: the relay drives it through
// plain calls, so the unit tests can too.
//
// A session: requested (waiting for the device's answer) → accepted (the tokens run for
// shadow.token_ttl from now) → device_joined / viewer_joined → spliced → ending (a reason is
// known; the ends still open are being closed) → gone (the audit row is final).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/Result.h"
#include "protocol/UpMessage.h"
#include "server/GatewayTunnels.h"
#include "server/HttpMessage.h"
#include "server/LiveDevices.h"
#include "server/Store.h"
#include "server/TunnelSessions.h"
#include "server/TunnelSplice.h"

namespace tether::server {

struct ShadowSettings {
  std::chrono::seconds token_ttl{30};
  std::size_t max_sessions = 100;
  std::string public_url;  // wss://HOST:PORT: the device's tunnel_url starts with it
  TunnelLimits limits;
};

// The gateways devices may be connected through, as ShadowService sees them (the server's
// GatewayConnector implements it; docs/protocol.md §5 "Tunnels over a gateway").
class ShadowGateways {
 public:
  virtual ~ShadowGateways() = default;
  // wss://HOST:PORT of gateway `name`; nullopt when unknown.
  [[nodiscard]] virtual std::optional<std::string> gateway_url(const std::string& name) const = 0;
  // Sends tunnel_open on the gateway's link; false when the link is down.
  virtual bool open_tunnel(const std::string& gateway, const GatewayTunnelOpen& open) = 0;
  virtual void close_tunnel(const std::string& gateway, const std::string& session_id,
                            const std::string& reason) = 0;
};

// The session's public parts, for GET /api/v1/shadow/sessions and tests.
struct ShadowSessionInfo {
  ShadowAuditRecord audit;
  std::string state;
  std::uint64_t queued_to_viewer = 0;
  std::uint64_t queued_to_device = 0;
};

class ShadowService final : public TunnelSessions {
 public:
  // Sends a message that is not a request to a device; false when it is offline.
  using Notify = std::function<bool(const std::string& device_id, const protocol::UpBody& body)>;
  using WallClock = std::function<std::int64_t()>;  // unix seconds
  using SteadyClock = std::chrono::steady_clock;

  ShadowService(Store& store, LiveDevices& live, Notify notify, ShadowSettings settings,
                WallClock wall_clock = {});
  // Sessions still open are recorded as ended (server_stopping unless a reason is known).
  ~ShadowService() override;
  ShadowService(const ShadowService&) = delete;
  ShadowService& operator=(const ShadowService&) = delete;

  void set_transport(TunnelTransport* transport) override { transport_ = transport; }
  // Devices behind a gateway (LiveDeviceState::gateway) are shadowed through it; without
  // this, shadowing them is refused.
  void set_gateways(ShadowGateways* gateways) { gateways_ = gateways; }
  // Called with each session's final audit row when it is gone (the metrics count them).
  std::function<void(const ShadowAuditRecord&)> on_finished;

  // ---- REST (RestApi routes here after authenticating; request.principal is the admin) --
  // Whether the path (after /api/v1/, split at '/') is one of ours.
  [[nodiscard]] static bool owns_route(const std::vector<std::string>& parts);
  // nullopt: the answer comes later through `respond`.
  [[nodiscard]] std::optional<HttpResponse> route(const HttpRequest& request,
                                                  const std::vector<std::string>& parts,
                                                  HttpRespond respond);

  struct StartRequest {
    std::string device_id;
    std::string admin;
    bool view_only = false;
    std::string monitor;
    protocol::ViewerKind viewer = protocol::ViewerKind::kBrowser;
    std::string host;  // the Host the caller reached us at; "" for public_url's
  };
  // Answers through `respond` (201 with the viewer URL, or the refusal), now or later.
  void start(const StartRequest& request, HttpRespond respond);
  // Scale-out (ClusterDevices): when it returns true, another instance holds the device's
  // channel and got the start; it answers through `respond`, which the forwarder took.
  using StartForwarder = std::function<bool(const StartRequest&, HttpRespond&)>;
  void set_start_forwarder(StartForwarder forwarder) { start_forwarder_ = std::move(forwarder); }
  // Scale-out: the sessions other instances run. `list` gathers theirs (objects as GET
  // /shadow/sessions lists them); `end` asks them to end one and tells whether one did.
  struct PeerSessions {
    std::function<void(std::function<void(nlohmann::json)>)> list;
    std::function<void(const std::string&, std::function<void(bool)>)> end;
  };
  void set_peer_sessions(PeerSessions peers) { peer_sessions_ = std::move(peers); }
  // This instance's sessions, as GET /shadow/sessions lists them.
  [[nodiscard]] nlohmann::json local_sessions_json() const;
  // Browsers may also join from these origins: the web apps of the other instances.
  void set_peer_origin(std::function<bool(const std::string&)> allowed) {
    peer_origin_ = std::move(allowed);
  }
  // Ends a session as the admin asked (shadow_stop "admin"); false when there is none.
  bool end_by_admin(const std::string& session_id);
  [[nodiscard]] std::vector<ShadowSessionInfo> active_sessions() const;
  [[nodiscard]] Result<std::vector<ShadowAuditRecord>> audit(const std::string& device_id,
                                                             int limit);

  // ---- tunnel ends (TunnelRelay; see TunnelSessions) ----------------------------------
  // Browsers may join only from the server's own origin (tunnel_origin_allowed).
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
  // The server's leg to a gateway's viewer end (a browser's session) did not open.
  void connect_failed(const std::string& session_id, TunnelEnd end,
                      const std::string& why) override;

  // ---- gateways -------------------------------------------------------------------------
  // What gateway `gateway` reports of a session it splices (GatewayTunnels' events:
  // device_joined, viewer_joined, spliced, ended with its reason).
  void on_gateway_tunnel_event(const std::string& gateway, const std::string& session,
                               const std::string& event, const std::string& reason);

  // ---- the UP channel and the loop ----------------------------------------------------
  void on_device_stop(const std::string& device_id, const protocol::ShadowStop& stop);
  // Ends accepted sessions whose ends did not both arrive within the token's validity.
  void expire(SteadyClock::time_point now);
  // The server is stopping: every session ends (shadow_stop "server_stopping").
  void stop_all();
  [[nodiscard]] std::size_t session_count() const noexcept { return sessions_.size(); }

  // Audit rows a server (or instance) left open when it died without ending its sessions: every
  // row still open, requested before `requested_before` (unix s), and neither run here nor
  // one of `running` (the other instances' sessions) ends as server_lost. Returns how many.
  [[nodiscard]] Result<int> end_orphaned_audit(const std::vector<std::string>& running,
                                               std::int64_t requested_before);

 private:
  struct Session;
  class SessionIo;

  Session* find(const std::string& session_id) const;
  void answer_start(const std::string& session_id, const Result<protocol::ResultBody>& result,
                    const HttpRespond& respond);
  // Records the reason (the first one wins), closes the ends still open, tells the device
  // when `notify_device`; the session goes once no end is open.
  void end_session(Session& session, const std::string& reason, const std::string& message,
                   bool notify_device, int close_code, bool flush);
  void finish_if_done(const std::string& session_id);
  void save(const ShadowAuditRecord& record);
  std::string viewer_url(const Session& session, const std::string& host) const;
  // The server's leg for a browser viewing a device behind a gateway: the session's device
  // end, connected to the gateway's viewer end.
  void connect_gateway_leg(const std::string& session_id);
  void gateway_leg_failed(Session& session, const std::string& why);
  std::int64_t now() const;
  HttpResponse list_response() const;
  HttpResponse audit_response(const HttpRequest& request);

  Store& store_;
  LiveDevices& live_;
  Notify notify_;
  ShadowSettings settings_;
  WallClock wall_clock_;
  TunnelTransport* transport_ = nullptr;
  ShadowGateways* gateways_ = nullptr;
  StartForwarder start_forwarder_;
  PeerSessions peer_sessions_;
  std::function<bool(const std::string&)> peer_origin_;
  std::unordered_map<std::string, std::unique_ptr<Session>> sessions_;
  // Recently finished sessions whose reason a device's late shadow_stop may still refine
  // (a tunnel that closed before its shadow_stop arrived): session id → audit row.
  std::deque<ShadowAuditRecord> recent_;
  // Answers that come after this object is gone see it expired.
  std::shared_ptr<ShadowService*> alive_ = std::make_shared<ShadowService*>(this);
};

// Whether a WebSocket's Origin header (if any) is this server's own origin for the Host the
// browser used: "https://" + host, compared case-insensitively.
[[nodiscard]] bool tunnel_origin_allowed(const std::optional<std::string>& origin,
                                         const std::string& host);

}  // namespace tether::server
