#include "server/GatewayTunnels.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <vector>

namespace tether::server {
namespace {

constexpr std::size_t kMaxSessionId = 40;
constexpr std::size_t kMinToken = 16;
constexpr std::size_t kMaxToken = 128;

bool base64url_text(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

bool device_id_text(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Compared in constant time for equal lengths (the length of a token is no secret).
bool same_secret(std::string_view a, std::string_view b) {
  if (a.empty() || a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

// Routes one session's splice requests to the transport under the session's id.
class GatewayTunnels::SessionIo final : public TunnelEndIo {
 public:
  SessionIo(GatewayTunnels& owner, std::string id) : owner_(owner), id_(std::move(id)) {}
  void request_writable(TunnelEnd end) override {
    if (owner_.transport_) owner_.transport_->request_writable(id_, end);
  }
  void set_receiving(TunnelEnd end, bool receiving) override {
    if (owner_.transport_) owner_.transport_->set_receiving(id_, end, receiving);
  }

 private:
  GatewayTunnels& owner_;
  std::string id_;
};

struct GatewayTunnels::Session {
  Session(GatewayTunnels& owner, const GatewayTunnelOpen& o, TunnelLimits limits)
      : open(o), io(owner, o.session_id), splice(io, limits) {}
  GatewayTunnelOpen open;
  SteadyClock::time_point deadline{};
  bool device_token_used = false;
  bool viewer_token_used = false;
  bool ending = false;
  bool spliced_reported = false;
  SessionIo io;
  TunnelSplice splice;
};

GatewayTunnels::GatewayTunnels(GatewayTunnelsSettings settings) : settings_(settings) {}

GatewayTunnels::~GatewayTunnels() = default;

GatewayTunnels::Session* GatewayTunnels::find(const std::string& session_id) const {
  auto it = sessions_.find(session_id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

std::uint64_t GatewayTunnels::bytes_to(const std::string& session_id, TunnelEnd end) const {
  const Session* s = find(session_id);
  return s == nullptr ? 0 : s->splice.bytes_to(end);
}

std::size_t GatewayTunnels::queued(const std::string& session_id, TunnelEnd end) const {
  const Session* s = find(session_id);
  return s == nullptr ? 0 : s->splice.queued(end);
}

void GatewayTunnels::emit(const std::string& session_id, const std::string& event,
                          const std::string& reason) {
  if (on_event) on_event(session_id, event, reason);
}

Status GatewayTunnels::open(const GatewayTunnelOpen& o) {
  if (o.session_id.empty() || o.session_id.size() > kMaxSessionId ||
      !base64url_text(o.session_id)) {
    return make_error(Errc::kInvalidArgument,
                      "a tunnel session id is 1 to 40 base64url characters");
  }
  if (!device_id_text(o.device_id)) {
    return make_error(Errc::kInvalidArgument, "a device id is 64 lowercase hex digits");
  }
  for (const std::string* token : {&o.device_token, &o.viewer_token}) {
    if (token->size() < kMinToken || token->size() > kMaxToken || !base64url_text(*token)) {
      return make_error(Errc::kInvalidArgument, "a tunnel token is 16 to 128 base64url characters");
    }
  }
  if (same_secret(o.device_token, o.viewer_token)) {
    return make_error(Errc::kInvalidArgument, "the two tokens of a session must differ");
  }
  if (o.ttl.count() <= 0 || o.ttl > std::chrono::hours(1)) {
    return make_error(Errc::kInvalidArgument, "a tunnel's ttl is 1 s to 1 h");
  }
  if (sessions_.count(o.session_id) != 0) {
    return make_error(Errc::kAlreadyExists, "tunnel session " + o.session_id + " exists already");
  }
  if (sessions_.size() >= settings_.max_sessions) {
    return make_error(Errc::kUnavailable, "the gateway runs its maximum of " +
                                              std::to_string(settings_.max_sessions) +
                                              " tunnel sessions");
  }
  auto session = std::make_unique<Session>(*this, o, settings_.limits);
  session->deadline = SteadyClock::now() + o.ttl;
  sessions_.emplace(o.session_id, std::move(session));
  return {};
}

void GatewayTunnels::end_session(Session& s, const std::string& reason, int close_code,
                                 const std::string& close_text, bool flush) {
  const bool first = !s.ending;
  s.ending = true;
  for (TunnelEnd end : {TunnelEnd::kDevice, TunnelEnd::kViewer}) {
    s.splice.close(end, close_code, close_text, flush);
  }
  if (first) emit(s.open.session_id, "ended", reason);
}

void GatewayTunnels::finish_if_done(const std::string& session_id) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  const Session& s = *it->second;
  if (!s.ending || s.splice.attached(TunnelEnd::kDevice) || s.splice.attached(TunnelEnd::kViewer)) {
    return;
  }
  sessions_.erase(it);
}

void GatewayTunnels::close(const std::string& session_id, const std::string& reason) {
  Session* s = find(session_id);
  if (s == nullptr) return;
  const std::string text = reason.empty() ? "closed_by_server" : reason.substr(0, 100);
  end_session(*s, "closed_by_server", kTunnelCloseNormal, text, true);
  finish_if_done(session_id);
}

void GatewayTunnels::expire(SteadyClock::time_point now) {
  std::vector<std::string> due;
  for (const auto& [id, s] : sessions_) {
    if (s->ending || s->splice.spliced() || now < s->deadline) continue;
    due.push_back(id);
  }
  for (const auto& id : due) {
    Session* s = find(id);
    if (s == nullptr || s->ending) continue;
    end_session(*s, "timeout", kTunnelClosePeerTimeout, "peer did not arrive", false);
    finish_if_done(id);
  }
}

void GatewayTunnels::stop_all() {
  std::vector<std::string> ids;
  ids.reserve(sessions_.size());
  for (const auto& [id, s] : sessions_) ids.push_back(id);
  for (const auto& id : ids) {
    Session* s = find(id);
    if (s == nullptr) continue;
    end_session(*s, "gateway_stopping", 1001, "gateway_stopping", false);
    finish_if_done(id);
  }
}

// ---- TunnelSessions -----------------------------------------------------------------------

bool GatewayTunnels::viewer_origin_allowed(const std::optional<std::string>& origin,
                                           const std::string& /*host*/) const {
  return !origin.has_value();
}

Status GatewayTunnels::check_join(const std::string& session_id, TunnelEnd end,
                                  std::string_view token, const std::string& device_id) const {
  const Session* s = find(session_id);
  if (s == nullptr || s->ending) return make_error(Errc::kNotFound, "no such tunnel session");
  const bool device = end == TunnelEnd::kDevice;
  const std::string& expected = device ? s->open.device_token : s->open.viewer_token;
  const bool used = device ? s->device_token_used : s->viewer_token_used;
  if (!same_secret(token, expected)) return make_error(Errc::kUnauthenticated, "wrong token");
  if (used || s->splice.attached(end) || s->splice.gone(end)) {
    return make_error(Errc::kUnauthenticated, "the token was used already");
  }
  if (SteadyClock::now() >= s->deadline) {
    return make_error(Errc::kUnauthenticated, "the token has expired");
  }
  if (device && device_id != s->open.device_id) {
    return make_error(Errc::kPermissionDenied, device_id.empty()
                                                   ? "no device certificate"
                                                   : "the certificate is not the session's device");
  }
  return {};
}

Status GatewayTunnels::join(const std::string& session_id, TunnelEnd end, std::string_view token,
                            const std::string& device_id) {
  TETHER_TRY(check_join(session_id, end, token, device_id));
  Session* s = find(session_id);
  (end == TunnelEnd::kDevice ? s->device_token_used : s->viewer_token_used) = true;
  return {};
}

void GatewayTunnels::opened(const std::string& session_id, TunnelEnd end) {
  Session* s = find(session_id);
  if (s == nullptr) return;
  s->splice.attach(end);
  if (s->ending) {
    // Ended while this end was connecting: close it; the server knows the session ended.
    s->splice.close(end, kTunnelCloseNormal, "session ended", false);
    return;
  }
  const bool report_splice = s->splice.spliced() && !s->spliced_reported;
  s->spliced_reported = s->spliced_reported || report_splice;
  // The handler may call back (close): `s` is not used after it runs.
  emit(session_id, std::string(tunnel_end_name(end)) + "_joined", "");
  if (report_splice && find(session_id) != nullptr && !find(session_id)->ending) {
    emit(session_id, "spliced", "");
  }
}

void GatewayTunnels::received(const std::string& session_id, TunnelEnd from,
                              std::string_view bytes) {
  if (Session* s = find(session_id)) s->splice.received(from, bytes);
}

void GatewayTunnels::received_text(const std::string& session_id, TunnelEnd from) {
  Session* s = find(session_id);
  if (s == nullptr) return;
  // The sender is closed with 1003, its peer after what is queued toward it; for the server
  // this end went away.
  s->splice.received_text(from);
  const bool first = !s->ending;
  s->ending = true;
  if (first) emit(session_id, "ended", std::string(tunnel_end_name(from)) + "_closed");
}

TunnelSplice::Action GatewayTunnels::take(const std::string& session_id, TunnelEnd end) {
  Session* s = find(session_id);
  if (s == nullptr) return std::monostate{};
  return s->splice.take(end);
}

void GatewayTunnels::closed(const std::string& session_id, TunnelEnd end) {
  Session* s = find(session_id);
  if (s == nullptr) return;
  s->splice.detach(end);
  const std::string reason = std::string(tunnel_end_name(end)) + "_closed";
  end_session(*s, reason, kTunnelCloseNormal, reason, true);
  finish_if_done(session_id);
}

}  // namespace tether::server
