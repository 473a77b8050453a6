#include "server/ShadowService.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <ctime>

#include "common/Base64.h"
#include "common/Hex.h"
#include "common/Log.h"
#include "protocol/JsonFieldReader.h"
#include "protocol/LimitedJsonParser.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using protocol::JsonFieldReader;
using protocol::StringKind;

constexpr int kDefaultAuditLimit = 100;
constexpr int kMaxAuditLimit = 1000;
constexpr std::size_t kRecentSessions = 64;
constexpr const char* kDeviceClosed = "device_closed";
// A gateway's session must outlive the device's answer (its user may be asked first) and
// then the ends' arrival; the server ends it earlier itself (close_tunnel) when it must.
constexpr std::chrono::seconds kGatewayAnswerAllowance{90};
constexpr int kTunnelCloseUnexpected = 1011;

Result<std::string> random_token(std::size_t bytes) {
  std::array<std::uint8_t, 32> buf{};
  if (bytes > buf.size() || RAND_bytes(buf.data(), static_cast<int>(bytes)) != 1) {
    return make_error(Errc::kCrypto, "no randomness for a shadowing token");
  }
  return base64url_encode(std::span<const std::uint8_t>(buf.data(), bytes));
}

bool same_secret(std::string_view a, std::string_view b) {
  if (a.empty() || a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string short_id(const std::string& id) {
  return id.substr(0, 12);
}

json optional_time(const std::optional<std::int64_t>& t) {
  return t ? json(*t) : json(nullptr);
}

json audit_json(const ShadowAuditRecord& r) {
  return {{"session", r.session_id},
          {"device", r.device_id},
          {"hostname", r.hostname},
          {"admin", r.admin},
          {"viewer", r.viewer},
          {"view_only", r.view_only},
          {"requested_at", r.requested_at},
          {"started_at", optional_time(r.started_at)},
          {"ended_at", optional_time(r.ended_at)},
          {"bytes_to_viewer", r.bytes_to_viewer},
          {"bytes_to_device", r.bytes_to_device},
          {"end_reason", r.end_reason.empty() ? json(nullptr) : json(r.end_reason)},
          {"end_message", r.end_message.empty() ? json(nullptr) : json(r.end_message)}};
}

// The HTTP status a device's refusal of shadow_start is answered with.
int refusal_status(const std::string& code) {
  if (code == "policy" || code == "user_denied" || code == "prompt_timeout") return 403;
  if (code == "no_session" || code == "busy") return 409;
  return 502;  // vnc_failed, and whatever a newer agent may say
}

// A Host header we are willing to put into a URL: host[:port], no path or spaces.
bool plausible_host(const std::string& host) {
  if (host.empty() || host.size() > 255) return false;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' ||
           c == '[' || c == ']' || c == '_';
  });
}

std::string query_arg(const std::string& query, const std::string& name) {
  std::size_t start = 0;
  while (start <= query.size()) {
    const auto amp = query.find('&', start);
    const auto end = amp == std::string::npos ? query.size() : amp;
    const std::string_view item(query.data() + start, end - start);
    if (item.size() > name.size() && item.substr(0, name.size()) == name &&
        item[name.size()] == '=') {
      return std::string(item.substr(name.size() + 1));
    }
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  return {};
}

}  // namespace

bool tunnel_origin_allowed(const std::optional<std::string>& origin, const std::string& host) {
  if (!origin) return true;
  if (host.empty()) return false;
  const std::string expected = "https://" + host;
  if (origin->size() != expected.size()) return false;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>((*origin)[i])) !=
        std::tolower(static_cast<unsigned char>(expected[i]))) {
      return false;
    }
  }
  return true;
}

// Routes one session's splice requests to the transport under the session's id.
class ShadowService::SessionIo final : public TunnelEndIo {
 public:
  SessionIo(ShadowService& service, std::string id) : service_(service), id_(std::move(id)) {}
  void request_writable(TunnelEnd end) override {
    if (service_.transport_) service_.transport_->request_writable(id_, end);
  }
  void set_receiving(TunnelEnd end, bool receiving) override {
    if (service_.transport_) service_.transport_->set_receiving(id_, end, receiving);
  }

 private:
  ShadowService& service_;
  std::string id_;
};

struct ShadowService::Session {
  Session(ShadowService& service, const std::string& session_id, TunnelLimits limits)
      : io(service, session_id), splice(io, limits) {}
  std::string id;
  std::string device_token;
  std::string viewer_token;
  bool device_token_used = false;
  bool viewer_token_used = false;
  bool accepted = false;
  bool ending = false;
  std::string host;  // the Host the REST caller used, for the viewer URL
  // A device behind a gateway: the device's tunnel (and an external viewer) meet there.
  std::string gateway;      // its name; "" when the device is connected directly
  std::string gateway_url;  // wss://HOST:PORT
  // A browser's session over a gateway: the browser joins here, and the server's own leg
  // (the device end of this splice) joins the gateway's viewer end with this token.
  bool gateway_leg = false;
  std::string gateway_viewer_token;
  bool leg_pending = false;      // the leg is connecting
  bool leg_started = false;      // it was tried (once per session)
  bool gateway_spliced = false;  // the gateway reported "spliced"
  bool gateway_ended = false;    // the gateway reported "ended": no close_tunnel back
  std::string gateway_state;     // the gateway's last join event
  std::optional<SteadyClock::time_point> deadline;  // for the ends to arrive, once accepted
  ShadowAuditRecord audit;
  SessionIo io;
  TunnelSplice splice;
};

ShadowService::ShadowService(Store& store, LiveDevices& live, Notify notify,
                             ShadowSettings settings, WallClock wall_clock)
    : store_(store),
      live_(live),
      notify_(std::move(notify)),
      settings_(std::move(settings)),
      wall_clock_(std::move(wall_clock)) {}

ShadowService::~ShadowService() {
  for (auto& [id, session] : sessions_) {
    ShadowAuditRecord record = session->audit;
    if (record.end_reason.empty()) record.end_reason = "server_stopping";
    record.ended_at = now();
    record.bytes_to_viewer =
        static_cast<std::int64_t>(session->splice.bytes_to(TunnelEnd::kViewer));
    record.bytes_to_device =
        static_cast<std::int64_t>(session->splice.bytes_to(TunnelEnd::kDevice));
    save(record);
  }
}

std::int64_t ShadowService::now() const {
  return wall_clock_ ? wall_clock_() : static_cast<std::int64_t>(std::time(nullptr));
}

void ShadowService::save(const ShadowAuditRecord& record) {
  if (auto saved = store_.save_shadow_audit(record); !saved.ok()) {
    log::error("cannot write the audit row of shadowing session " + record.session_id + ": " +
               saved.error().message);
  }
}

Result<int> ShadowService::end_orphaned_audit(const std::vector<std::string>& running,
                                              std::int64_t requested_before) {
  // The newest rows: a row older than these is long ended or long orphaned (bounded work).
  constexpr int kRowsLooked = 1000;
  TETHER_ASSIGN_OR_RETURN(auto rows, store_.list_shadow_audit("", kRowsLooked));
  int ended = 0;
  for (auto& row : rows) {
    if (row.ended_at || row.requested_at >= requested_before || find(row.session_id) != nullptr ||
        std::find(running.begin(), running.end(), row.session_id) != running.end()) {
      continue;
    }
    row.ended_at = now();
    row.end_reason = "server_lost";
    row.end_message = "the server (instance) that ran the session stopped without ending it";
    TETHER_TRY(store_.save_shadow_audit(row));
    ++ended;
  }
  return ended;
}

ShadowService::Session* ShadowService::find(const std::string& session_id) const {
  auto it = sessions_.find(session_id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

// ---- REST ---------------------------------------------------------------------------------

bool ShadowService::owns_route(const std::vector<std::string>& parts) {
  if (parts.size() == 3 && parts[0] == "devices" && parts[2] == "shadow") return true;
  if (!parts.empty() && parts[0] == "shadow" && parts.size() >= 2 && parts[1] == "sessions") {
    return parts.size() <= 3;
  }
  return parts.size() == 1 && parts[0] == "audit";
}

std::optional<HttpResponse> ShadowService::route(const HttpRequest& request,
                                                 const std::vector<std::string>& parts,
                                                 HttpRespond respond) {
  const std::string& method = request.method;
  auto not_allowed = [](const std::string& allowed) {
    HttpResponse r = error_response(405, Errc::kInvalidArgument,
                                    "method not allowed here (allowed: " + allowed + ")");
    r.headers.emplace_back("Allow", allowed);
    return r;
  };
  if (parts.size() == 1) {
    if (method != "GET") return not_allowed("GET");
    return audit_response(request);
  }
  if (parts[0] == "shadow") {
    if (parts.size() == 2) {
      if (method != "GET") return not_allowed("GET");
      if (!peer_sessions_.list) return list_response();
      // Every instance's sessions: ours, then the others' as they answer.
      peer_sessions_.list([mine = local_sessions_json(), respond](json theirs) {
        json all = mine;
        for (auto& s : theirs) all.push_back(std::move(s));
        respond(json_response(200, {{"sessions", all}}));
      });
      return std::nullopt;
    }
    if (method != "DELETE") return not_allowed("DELETE");
    const std::string session = parts[2];
    if (end_by_admin(session)) return json_response(200, {{"ended", session}});
    auto not_found = [session] {
      return error_response(404, Errc::kNotFound,
                            "no active shadowing session " + session.substr(0, 64));
    };
    if (!peer_sessions_.end) return not_found();
    // Perhaps another instance runs it (the one holding the device).
    peer_sessions_.end(session, [session, respond, not_found](bool ended) {
      respond(ended ? json_response(200, {{"ended", session}}) : not_found());
    });
    return std::nullopt;
  }
  // POST /devices/{id}/shadow
  if (method != "POST") return not_allowed("POST");
  StartRequest start_request;
  start_request.device_id = parts[1];
  start_request.admin = request.principal.empty() ? "admin" : request.principal;
  start_request.host = request.host;
  if (!request.body.empty()) {
    protocol::JsonLimits limits;
    limits.max_bytes = kMaxRequestBody;
    limits.max_depth = 4;
    auto doc = protocol::parse_limited_json(request.body, limits);
    if (!doc.ok()) {
      return error_response(http_status_for(doc.error().code), doc.error().code,
                            doc.error().message);
    }
    if (!doc->is_object()) {
      return error_response(400, Errc::kWrongType, "the request body must be a JSON object");
    }
    JsonFieldReader f(*doc, "");
    start_request.view_only = f.opt_boolean("view_only", false);
    start_request.monitor = f.opt_str("monitor", 64).value_or("");
    const std::string viewer = f.opt_str("viewer", 16, StringKind::kToken).value_or("browser");
    if (auto status = f.finish(); !status.ok()) {
      return error_response(http_status_for(status.error().code), status.error().code,
                            status.error().message);
    }
    if (viewer == "external") {
      start_request.viewer = protocol::ViewerKind::kExternal;
    } else if (viewer != "browser") {
      return error_response(400, Errc::kBadValue,
                            "viewer must be \"browser\" or \"external\", not \"" + viewer + "\"");
    }
  }
  auto slot = std::make_shared<std::optional<HttpResponse>>();
  auto waiting = std::make_shared<bool>(false);
  start(start_request, [slot, waiting, respond](HttpResponse response) {
    if (*waiting) {
      respond(std::move(response));
    } else {
      *slot = std::move(response);
    }
  });
  if (*slot) return std::move(**slot);
  *waiting = true;
  return std::nullopt;
}

HttpResponse ShadowService::list_response() const {
  return json_response(200, {{"sessions", local_sessions_json()}});
}

json ShadowService::local_sessions_json() const {
  json sessions = json::array();
  for (const auto& info : active_sessions()) {
    json j = audit_json(info.audit);
    j.erase("ended_at");
    j.erase("end_reason");
    j.erase("end_message");
    j["state"] = info.state;
    j["queued_to_viewer"] = info.queued_to_viewer;
    j["queued_to_device"] = info.queued_to_device;
    sessions.push_back(std::move(j));
  }
  return sessions;
}

HttpResponse ShadowService::audit_response(const HttpRequest& request) {
  const std::string device = query_arg(request.query, "device");
  if (!device.empty() && !(device.size() == 64 && is_lower_hex(device))) {
    return error_response(400, Errc::kBadValue, "device must be a device id (64 hex digits)");
  }
  int limit = kDefaultAuditLimit;
  const std::string limit_text = query_arg(request.query, "limit");
  if (!limit_text.empty()) {
    auto [ptr, ec] =
        std::from_chars(limit_text.data(), limit_text.data() + limit_text.size(), limit);
    if (ec != std::errc() || ptr != limit_text.data() + limit_text.size() || limit < 1 ||
        limit > kMaxAuditLimit) {
      return error_response(400, Errc::kBadValue,
                            "limit must be an integer from 1 to " + std::to_string(kMaxAuditLimit));
    }
  }
  auto rows = audit(device, limit);
  if (!rows.ok()) {
    return error_response(http_status_for(rows.error().code), rows.error().code,
                          rows.error().message);
  }
  json sessions = json::array();
  for (const auto& r : *rows) sessions.push_back(audit_json(r));
  return json_response(200, {{"sessions", sessions}});
}

Result<std::vector<ShadowAuditRecord>> ShadowService::audit(const std::string& device_id,
                                                            int limit) {
  return store_.list_shadow_audit(device_id, limit);
}

std::vector<ShadowSessionInfo> ShadowService::active_sessions() const {
  std::vector<ShadowSessionInfo> out;
  for (const auto& [id, s] : sessions_) {
    ShadowSessionInfo info;
    info.audit = s->audit;
    info.audit.bytes_to_viewer = static_cast<std::int64_t>(s->splice.bytes_to(TunnelEnd::kViewer));
    info.audit.bytes_to_device = static_cast<std::int64_t>(s->splice.bytes_to(TunnelEnd::kDevice));
    const bool device = s->splice.attached(TunnelEnd::kDevice);
    const bool viewer = s->splice.attached(TunnelEnd::kViewer);
    if (s->ending) {
      info.state = "ending";
    } else if (s->splice.spliced() || (s->gateway_spliced && !s->gateway_leg)) {
      info.state = "spliced";
    } else if (!s->gateway.empty() && !s->gateway_leg && !s->gateway_state.empty()) {
      info.state = s->gateway_state;
    } else if (device) {
      info.state = "device_joined";
    } else if (viewer) {
      info.state = "viewer_joined";
    } else {
      info.state = s->accepted ? "accepted" : "requested";
    }
    info.queued_to_viewer = s->splice.queued(TunnelEnd::kViewer);
    info.queued_to_device = s->splice.queued(TunnelEnd::kDevice);
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.audit.requested_at != b.audit.requested_at
               ? a.audit.requested_at < b.audit.requested_at
               : a.audit.session_id < b.audit.session_id;
  });
  return out;
}

void ShadowService::start(const StartRequest& request, HttpRespond respond) {
  auto device = store_.find_device(request.device_id);
  if (!device.ok()) {
    respond(error_response(http_status_for(device.error().code), device.error().code,
                           device.error().message));
    return;
  }
  if (!*device || (*device)->deleted) {
    respond(error_response(404, Errc::kNotFound, "no device " + request.device_id.substr(0, 64)));
    return;
  }
  // Another instance holds the device's channel: the session is made there (its tunnels meet
  // at that instance), and its answer comes back through `respond`.
  if (start_forwarder_ && start_forwarder_(request, respond)) return;
  ShadowAuditRecord audit;
  auto id = random_token(16);
  auto device_token = random_token(32);
  auto viewer_token = random_token(32);
  if (!id.ok() || !device_token.ok() || !viewer_token.ok()) {
    respond(error_response(500, Errc::kInternal, "no randomness for a shadowing session"));
    return;
  }
  audit.session_id = *id;
  audit.device_id = (*device)->id;
  audit.hostname = (*device)->hostname;
  audit.admin = request.admin;
  audit.viewer = std::string(protocol::viewer_kind_name(request.viewer));
  audit.view_only = request.view_only;
  audit.requested_at = now();

  // Refusals of our own, recorded like the device's.
  auto refuse = [&](int status, const std::string& code, const std::string& message) {
    audit.ended_at = audit.requested_at;
    audit.end_reason = code;
    audit.end_message = message;
    save(audit);
    log::info("shadowing of device " + short_id(audit.device_id) + " for " + audit.admin +
              " refused: " + code + ": " + message);
    respond(error_response(status, code, message));
  };
  if ((*device)->revoked) {
    refuse(403, "permission_denied", "device " + short_id(audit.device_id) + " is revoked");
    return;
  }
  const auto state = live_.live_state(audit.device_id);
  if (!state) {
    refuse(409, "offline", "device " + short_id(audit.device_id) + " is offline");
    return;
  }
  for (const auto& [sid, s] : sessions_) {
    if (s->audit.device_id == audit.device_id && !s->ending) {
      refuse(409, "busy",
             "device " + short_id(audit.device_id) + " already has an active shadowing session (" +
                 sid + ")");
      return;
    }
  }
  if (sessions_.size() >= settings_.max_sessions) {
    refuse(503, "unavailable",
           "the server runs its maximum of " + std::to_string(settings_.max_sessions) +
               " shadowing sessions (shadow.max_sessions)");
    return;
  }

  auto session = std::make_unique<Session>(*this, *id, settings_.limits);
  session->id = *id;
  session->device_token = *device_token;
  session->viewer_token = *viewer_token;
  session->host = request.host;
  session->audit = audit;
  if (!state->gateway.empty()) {
    // Behind a gateway: the session is opened there first, on the same link that carries
    // shadow_start, so that the gateway knows it before the device's tunnel arrives.
    const std::string& gateway = state->gateway;
    const auto url = gateways_ ? gateways_->gateway_url(gateway) : std::nullopt;
    if (!url) {
      refuse(503, "unavailable",
             "device " + short_id(audit.device_id) + " is connected through gateway " + gateway +
                 ", which this server does not know");
      return;
    }
    session->gateway = gateway;
    session->gateway_url = *url;
    GatewayTunnelOpen open;
    open.session_id = *id;
    open.device_id = audit.device_id;
    open.device_token = *device_token;
    open.ttl = settings_.token_ttl + kGatewayAnswerAllowance;
    if (request.viewer == protocol::ViewerKind::kBrowser) {
      auto leg_token = random_token(32);
      if (!leg_token.ok()) {
        respond(error_response(500, Errc::kInternal, "no randomness for a shadowing session"));
        return;
      }
      session->gateway_leg = true;
      session->gateway_viewer_token = *leg_token;
      open.viewer_token = *leg_token;
    } else {
      open.viewer_token = *viewer_token;
    }
    if (!gateways_->open_tunnel(gateway, open)) {
      refuse(503, "unavailable", "gateway " + gateway + " is not connected");
      return;
    }
  }
  const std::string tunnel_base =
      session->gateway.empty() ? settings_.public_url : session->gateway_url;
  sessions_.emplace(*id, std::move(session));
  save(audit);
  log::info("shadowing session " + *id + " requested by " + audit.admin + " for device " +
            short_id(audit.device_id) + " (" + audit.hostname + ", " + audit.viewer +
            (audit.view_only ? ", view only" : "") +
            (state->gateway.empty() ? "" : ", through gateway " + state->gateway) + ")");

  protocol::ShadowStart body;
  body.session_id = *id;
  body.tunnel_url = tunnel_base + "/tunnel/device/" + *id;
  body.token = *device_token;
  body.view_only = request.view_only;
  body.monitor = request.monitor;
  body.admin = request.admin;
  body.viewer = request.viewer;
  live_.request(audit.device_id, body,
                [alive = std::weak_ptr<ShadowService*>(alive_), id = *id,
                 respond](Result<protocol::ResultBody> result) {
                  auto self = alive.lock();
                  if (!self) {
                    respond(error_response(503, Errc::kUnavailable, "the server is stopping"));
                    return;
                  }
                  (*self)->answer_start(id, result, respond);
                });
}

void ShadowService::answer_start(const std::string& session_id,
                                 const Result<protocol::ResultBody>& result,
                                 const HttpRespond& respond) {
  Session* s = find(session_id);
  if (s == nullptr || s->ending) {
    respond(error_response(409, Errc::kConflict,
                           "the shadowing session ended before the device answered"));
    return;
  }
  if (!result.ok()) {
    const Error& e = result.error();
    int status = 502;
    std::string code = std::string(errc_name(e.code));
    if (e.code == Errc::kTimeout) {
      status = 504;
    } else if (e.code == Errc::kUnavailable && !live_.live_state(s->audit.device_id)) {
      status = 409;
      code = "offline";
    }
    log::info("shadowing session " + session_id + ": no answer from the device: " + e.message);
    end_session(*s, code, e.message, e.code == Errc::kTimeout, kTunnelCloseNormal, false);
    finish_if_done(session_id);
    respond(error_response(status, code, e.message));
    return;
  }
  if (!result->ok) {
    const std::string code = result->error ? result->error->code : "internal";
    const std::string message = result->error ? result->error->message : "it gave no reason";
    log::info("shadowing session " + session_id + " refused by device " +
              short_id(s->audit.device_id) + ": " + code + ": " + message);
    end_session(*s, code, message, false, kTunnelCloseNormal, false);
    finish_if_done(session_id);
    respond(error_response(refusal_status(code), code, message));
    return;
  }
  const json& data = result->data;
  bool view_only = s->audit.view_only;
  if (auto it = data.find("view_only"); it != data.end() && it->is_boolean()) {
    view_only = it->get<bool>();
  }
  std::string consent = "not_required";
  if (auto it = data.find("consent"); it != data.end() && it->is_string()) {
    consent = it->get<std::string>();
  }
  s->accepted = true;
  s->audit.view_only = view_only;
  s->deadline = SteadyClock::now() + settings_.token_ttl;
  save(s->audit);
  log::info("shadowing session " + session_id + " accepted by device " +
            short_id(s->audit.device_id) + " (consent " + consent +
            (view_only ? ", view only" : "") + ")");
  respond(json_response(201, {{"session", session_id},
                              {"device", s->audit.device_id},
                              {"viewer_url", viewer_url(*s, s->host)},
                              {"view_only", view_only},
                              {"consent", consent},
                              {"expires_in", settings_.token_ttl.count()}}));
}

std::string ShadowService::viewer_url(const Session& session, const std::string& host) const {
  std::string base;
  if (!session.gateway.empty() && !session.gateway_leg) {
    base = session.gateway_url;  // an external viewer goes straight to the gateway
  } else if (plausible_host(host)) {
    base = "wss://" + host;
  } else {
    base = settings_.public_url;
  }
  return base + "/tunnel/viewer/" + session.id + "?token=" + session.viewer_token;
}

bool ShadowService::end_by_admin(const std::string& session_id) {
  Session* s = find(session_id);
  if (s == nullptr || s->ending) return false;
  log::info("shadowing session " + session_id + " ended by the admin");
  end_session(*s, "admin", "", true, kTunnelCloseNormal, true);
  finish_if_done(session_id);
  return true;
}

void ShadowService::end_session(Session& s, const std::string& reason, const std::string& message,
                                bool notify_device, int close_code, bool flush) {
  if (s.audit.end_reason.empty()) {
    s.audit.end_reason = reason;
    s.audit.end_message = message;
  }
  const bool was_ending = s.ending;
  s.ending = true;
  // The close frame's reason: the protocol's words for a peer that did not come.
  const std::string close_text = close_code == kTunnelClosePeerTimeout ? message : reason;
  for (TunnelEnd end : {TunnelEnd::kDevice, TunnelEnd::kViewer}) {
    s.splice.close(end, close_code, close_text, flush);
  }
  if (notify_device && !was_ending && notify_) {
    protocol::ShadowStop stop;
    stop.session_id = s.id;
    stop.reason = reason;
    stop.message = message;
    (void)notify_(s.audit.device_id, stop);
  }
  if (!was_ending && !s.gateway.empty() && !s.gateway_ended && gateways_ != nullptr) {
    gateways_->close_tunnel(s.gateway, s.id, s.audit.end_reason);
  }
}

void ShadowService::finish_if_done(const std::string& session_id) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  if (!s.ending || s.leg_pending || s.splice.attached(TunnelEnd::kDevice) ||
      s.splice.attached(TunnelEnd::kViewer)) {
    return;
  }
  ShadowAuditRecord record = s.audit;
  record.ended_at = now();
  record.bytes_to_viewer = static_cast<std::int64_t>(s.splice.bytes_to(TunnelEnd::kViewer));
  record.bytes_to_device = static_cast<std::int64_t>(s.splice.bytes_to(TunnelEnd::kDevice));
  save(record);
  if (on_finished) on_finished(record);
  if (record.started_at) {
    log::info("shadowing session " + session_id + " ended: " + record.end_reason +
              (record.end_message.empty() ? "" : " (" + record.end_message + ")") + "; " +
              std::to_string(record.bytes_to_viewer) + " bytes to the viewer, " +
              std::to_string(record.bytes_to_device) + " to the device");
  }
  recent_.push_back(std::move(record));
  while (recent_.size() > kRecentSessions) recent_.pop_front();
  sessions_.erase(it);
}

// ---- tunnel ends --------------------------------------------------------------------------

Status ShadowService::check_join(const std::string& session_id, TunnelEnd end,
                                 std::string_view token, const std::string& device_id) const {
  const Session* s = find(session_id);
  if (s == nullptr || s->ending) {
    return make_error(Errc::kNotFound, "no such shadowing session");
  }
  const bool device = end == TunnelEnd::kDevice;
  // Over a gateway the device's tunnel always meets there, and so does an external viewer.
  if (!s->gateway.empty() && (device || !s->gateway_leg)) {
    return make_error(Errc::kPermissionDenied, std::string("the ") + tunnel_end_name(end) +
                                                   " end of this session is at gateway " +
                                                   s->gateway);
  }
  const std::string& expected = device ? s->device_token : s->viewer_token;
  const bool used = device ? s->device_token_used : s->viewer_token_used;
  if (!same_secret(token, expected)) return make_error(Errc::kUnauthenticated, "wrong token");
  if (used || s->splice.attached(end) || s->splice.gone(end)) {
    return make_error(Errc::kUnauthenticated, "the token was used already");
  }
  // The device may open its tunnel before its answer reached us; the viewer only has the
  // token from the answer.
  if (!device && !s->accepted) return make_error(Errc::kUnauthenticated, "not accepted yet");
  if (s->deadline && SteadyClock::now() >= *s->deadline) {
    return make_error(Errc::kUnauthenticated, "the token has expired");
  }
  if (device && device_id != s->audit.device_id) {
    return make_error(Errc::kPermissionDenied, device_id.empty()
                                                   ? "no device certificate"
                                                   : "the certificate is not the session's device");
  }
  return {};
}

Status ShadowService::join(const std::string& session_id, TunnelEnd end, std::string_view token,
                           const std::string& device_id) {
  TETHER_TRY(check_join(session_id, end, token, device_id));
  Session* s = find(session_id);
  if (end == TunnelEnd::kDevice) {
    s->device_token_used = true;
  } else {
    s->viewer_token_used = true;
  }
  return {};
}

void ShadowService::opened(const std::string& session_id, TunnelEnd end) {
  Session* s = find(session_id);
  if (s == nullptr) return;
  if (end == TunnelEnd::kDevice) s->leg_pending = false;
  s->splice.attach(end);
  log::debug("shadowing session " + session_id + ": " + tunnel_end_name(end) + " joined");
  if (s->splice.spliced() && !s->audit.started_at) {
    s->audit.started_at = now();
    save(s->audit);
    log::info("shadowing session " + session_id + " spliced (device " +
              short_id(s->audit.device_id) + ", " + s->audit.viewer + " viewer of " +
              s->audit.admin + ")");
  }
  if (s->ending) {
    // Ended while this end was connecting: close it.
    s->splice.close(end, kTunnelCloseNormal, s->audit.end_reason, false);
    return;
  }
  if (end == TunnelEnd::kViewer && s->gateway_leg && !s->leg_started) connect_gateway_leg(s->id);
}

void ShadowService::connect_gateway_leg(const std::string& session_id) {
  Session* s = find(session_id);
  if (s == nullptr) return;
  s->leg_started = true;
  s->leg_pending = true;
  const std::string url =
      s->gateway_url + "/tunnel/viewer/" + s->id + "?token=" + s->gateway_viewer_token;
  const std::string gateway = s->gateway;
  Status connecting = transport_ != nullptr
                          ? transport_->connect_device_end(session_id, url)
                          : Status(make_error(Errc::kUnavailable, "no tunnel transport"));
  if (connecting.ok()) {
    log::debug("shadowing session " + session_id + ": connecting to gateway " + gateway);
    return;
  }
  s = find(session_id);  // the transport may have called back
  if (s == nullptr) return;
  s->leg_pending = false;
  gateway_leg_failed(*s, connecting.error().message);
  finish_if_done(session_id);
}

void ShadowService::connect_failed(const std::string& session_id, TunnelEnd end,
                                   const std::string& why) {
  Session* s = find(session_id);
  if (s == nullptr || end != TunnelEnd::kDevice || !s->leg_pending) return;
  s->leg_pending = false;
  gateway_leg_failed(*s, why);
  finish_if_done(session_id);
}

void ShadowService::gateway_leg_failed(Session& s, const std::string& why) {
  const std::string message = "cannot reach gateway " + s.gateway + ": " + why;
  log::warning("shadowing session " + s.id + ": " + message);
  end_session(s, "gateway_unreachable", message, true, kTunnelCloseUnexpected, false);
}

void ShadowService::received(const std::string& session_id, TunnelEnd from,
                             std::string_view bytes) {
  if (Session* s = find(session_id)) s->splice.received(from, bytes);
}

void ShadowService::received_text(const std::string& session_id, TunnelEnd from) {
  if (Session* s = find(session_id)) {
    // The sender is closed with 1003; its peer follows as after any close ("<end>_closed").
    s->splice.received_text(from);
    if (s->audit.end_reason.empty()) {
      s->audit.end_reason = std::string(tunnel_end_name(from)) + "_protocol_error";
      s->audit.end_message = "the " + std::string(tunnel_end_name(from)) + " sent a text message";
    }
    s->ending = true;
  }
}

TunnelSplice::Action ShadowService::take(const std::string& session_id, TunnelEnd end) {
  Session* s = find(session_id);
  if (s == nullptr) return std::monostate{};
  return s->splice.take(end);
}

void ShadowService::closed(const std::string& session_id, TunnelEnd end) {
  Session* s = find(session_id);
  if (s == nullptr) return;
  s->splice.detach(end);
  log::debug("shadowing session " + session_id + ": " + tunnel_end_name(end) + " left");
  end_session(*s, std::string(tunnel_end_name(end)) + "_closed", "", false, kTunnelCloseNormal,
              true);
  finish_if_done(session_id);
}

// ---- UP and the loop ----------------------------------------------------------------------

void ShadowService::on_device_stop(const std::string& device_id, const protocol::ShadowStop& stop) {
  Session* s = find(stop.session_id);
  if (s != nullptr && s->audit.device_id == device_id) {
    log::info("shadowing session " + stop.session_id + " ended by device " + short_id(device_id) +
              ": " + stop.reason + (stop.message.empty() ? "" : " (" + stop.message + ")"));
    // The device's own reason is better than having seen its tunnel close.
    if (s->audit.end_reason == kDeviceClosed) {
      s->audit.end_reason = stop.reason;
      s->audit.end_message = stop.message;
    }
    end_session(*s, stop.reason, stop.message, false, kTunnelCloseNormal, true);
    finish_if_done(stop.session_id);
    return;
  }
  for (auto& record : recent_) {
    if (record.session_id != stop.session_id || record.device_id != device_id) continue;
    if (record.end_reason == kDeviceClosed) {
      record.end_reason = stop.reason;
      record.end_message = stop.message;
      save(record);
      log::info("shadowing session " + stop.session_id + ": device " + short_id(device_id) +
                " says it ended: " + stop.reason);
    }
    return;
  }
  log::debug("device " + short_id(device_id) + " sent shadow_stop for unknown session " +
             stop.session_id);
}

void ShadowService::expire(SteadyClock::time_point now) {
  std::vector<std::string> due;
  for (const auto& [id, s] : sessions_) {
    if (s->ending || !s->deadline || s->splice.spliced() || s->gateway_spliced ||
        now < *s->deadline) {
      continue;
    }
    due.push_back(id);
  }
  for (const auto& id : due) {
    Session* s = find(id);
    if (s == nullptr) continue;
    const bool device = s->splice.attached(TunnelEnd::kDevice);
    log::info("shadowing session " + id + ": the " + (device ? "viewer" : "device") +
              " did not arrive in time");
    end_session(*s, "peer_timeout", "peer did not arrive", true, kTunnelClosePeerTimeout, false);
    finish_if_done(id);
  }
}

void ShadowService::stop_all() {
  std::vector<std::string> ids;
  for (const auto& [id, s] : sessions_) ids.push_back(id);
  for (const auto& id : ids) {
    Session* s = find(id);
    if (s == nullptr) continue;
    end_session(*s, "server_stopping", "", true, 1001, false);
    finish_if_done(id);
  }
}

}  // namespace tether::server

namespace tether::server {

// ---- gateways -----------------------------------------------------------------------------

bool ShadowService::viewer_origin_allowed(const std::optional<std::string>& origin,
                                          const std::string& host) const {
  return tunnel_origin_allowed(origin, host) || (origin && peer_origin_ && peer_origin_(*origin));
}

void ShadowService::on_gateway_tunnel_event(const std::string& gateway, const std::string& session,
                                            const std::string& event, const std::string& reason) {
  Session* s = find(session);
  if (s == nullptr || s->gateway != gateway) {
    log::debug("gateway " + gateway + " reported " + event + " for unknown session " + session);
    return;
  }
  if (event == "device_joined" || event == "viewer_joined") {
    log::debug("shadowing session " + session + ": " + event + " at gateway " + gateway);
    s->gateway_state = event;
    return;
  }
  if (event == "spliced") {
    s->gateway_spliced = true;
    if (!s->audit.started_at) {
      s->audit.started_at = now();
      save(s->audit);
      log::info("shadowing session " + session + " spliced at gateway " + gateway + " (device " +
                short_id(s->audit.device_id) + ", " + s->audit.viewer + " viewer of " +
                s->audit.admin + ")");
    }
    return;
  }
  if (event != "ended") {
    log::debug("gateway " + gateway + " reported an unknown event " + event.substr(0, 40) +
               " for session " + session);
    return;
  }
  s->gateway_ended = true;
  // The protocol's words for an end that did not come; the gateway's others as they are.
  const bool timeout = reason == "timeout";
  const std::string code = timeout ? "peer_timeout" : (reason.empty() ? "gateway_ended" : reason);
  const std::string message = timeout ? "peer did not arrive at gateway " + gateway : "";
  if (s->gateway_leg && s->splice.attached(TunnelEnd::kDevice) && !s->ending) {
    // The server's leg is still open: the gateway closes it after what it still holds for
    // it, and that close ends the session here; closing now could cut those bytes off.
    if (s->audit.end_reason.empty()) {
      s->audit.end_reason = code;
      s->audit.end_message = message;
    }
    return;
  }
  log::info("shadowing session " + session + " ended at gateway " + gateway + ": " +
            (reason.empty() ? "no reason" : reason));
  end_session(*s, code, message, timeout, kTunnelCloseNormal, true);
  finish_if_done(session);
}

}  // namespace tether::server
