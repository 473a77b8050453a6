#include "server/TunnelRelay.h"

#include <charconv>
#include <cstring>
#include <exception>
#include <unordered_set>
#include <vector>

#include "common/Log.h"
#include "server/HttpsServer.h"

namespace tether::server {
namespace {

constexpr std::size_t kMaxSessionId = 40;

std::string header_text(lws* wsi, lws_token_indexes token, std::size_t max = 1024) {
  const int len = lws_hdr_total_length(wsi, token);
  if (len <= 0 || static_cast<std::size_t>(len) > max) return {};
  std::string out(static_cast<std::size_t>(len) + 1, '\0');
  const int copied = lws_hdr_copy(wsi, out.data(), static_cast<int>(out.size()), token);
  if (copied < 0) return {};
  out.resize(static_cast<std::size_t>(copied));
  return out;
}

std::string peer_of(lws* wsi) {
  char buf[128] = {0};
  const char* p = lws_get_peer_simple(wsi, buf, sizeof buf);
  return p ? p : "";
}

// Relays alive now: a client vhost outlives its relay when the context does.
std::unordered_set<TunnelRelay*>& live_relays() {
  static std::unordered_set<TunnelRelay*> relays;
  return relays;
}

bool base64url_text(const std::string& s) {
  for (char c : s) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::optional<TunnelTarget> parse_tunnel_path(const std::string& path) {
  static const std::pair<const char*, TunnelEnd> kPrefixes[] = {
      {"/tunnel/device/", TunnelEnd::kDevice},
      {"/tunnel/viewer/", TunnelEnd::kViewer},
  };
  for (const auto& [prefix, end] : kPrefixes) {
    const std::size_t n = std::strlen(prefix);
    if (path.compare(0, n, prefix) != 0) continue;
    std::string id = path.substr(n);
    if (id.empty() || id.size() > kMaxSessionId || !base64url_text(id)) return std::nullopt;
    return TunnelTarget{end, std::move(id)};
  }
  return std::nullopt;
}

Result<TunnelClientUrl> parse_tunnel_client_url(std::string_view url) {
  constexpr std::string_view kScheme = "wss://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return make_error(Errc::kBadValue, "a tunnel URL must start with wss://");
  }
  std::string_view rest = url.substr(kScheme.size());
  const std::size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  TunnelClientUrl out;
  out.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {  // [IPv6]
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return make_error(Errc::kBadValue, "unclosed [ in URL");
    out.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return make_error(Errc::kBadValue, "junk after ] in the URL");
      port_text = after.substr(1);
      has_port = true;
    }
  } else {
    const std::size_t colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      has_port = true;
    }
  }
  if (out.host.empty()) return make_error(Errc::kBadValue, "no host in the tunnel URL");
  if (has_port) {
    unsigned port = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc() || ptr != port_text.data() + port_text.size() ||
        port == 0 || port > 65535) {
      return make_error(Errc::kBadValue, "bad port in the tunnel URL");
    }
    out.port = static_cast<std::uint16_t>(port);
  }
  for (char c : out.host) {
    if (c <= ' ' || c == '/' || c == '@' || c == '?' || c == '#') {
      return make_error(Errc::kBadValue, "bad host in the tunnel URL");
    }
  }
  return out;
}

TunnelRelay::TunnelRelay(TunnelSessions& sessions) : sessions_(sessions) {
  sessions_.set_transport(this);
  live_relays().insert(this);
}

TunnelRelay::~TunnelRelay() {
  sessions_.set_transport(nullptr);
  // Outbound ends still open belong to the context; they find nothing of ours any more.
  for (auto& [ptr, end] : clients_) {
    if (end->wsi != nullptr) lws_set_opaque_user_data(end->wsi, nullptr);
  }
  live_relays().erase(this);  // the client vhost (the context owns it) still names us
}

void TunnelRelay::set_metrics(MetricsRegistry& registry) {
  auto family = registry.counter_family(
      "tether_tunnel_relayed_bytes_total",
      "Shadowing tunnel bytes relayed, by direction (to_viewer: received from the device's "
      "end; to_device: received from the viewer's end).",
      {"direction"});
  relayed_[static_cast<std::size_t>(TunnelEnd::kDevice)] = family.with({"to_viewer"});
  relayed_[static_cast<std::size_t>(TunnelEnd::kViewer)] = family.with({"to_device"});
}

std::size_t TunnelRelay::open_ends() const noexcept {
  std::size_t n = 0;
  for (const auto& [id, ends] : ends_) n += (ends[0] != nullptr) + (ends[1] != nullptr);
  return n;
}

lws* TunnelRelay::wsi_of(const std::string& session, TunnelEnd end) const {
  auto it = ends_.find(session);
  return it == ends_.end() ? nullptr : it->second[static_cast<std::size_t>(end)];
}

void TunnelRelay::request_writable(const std::string& session, TunnelEnd end) {
  if (lws* wsi = wsi_of(session, end)) lws_callback_on_writable(wsi);
}

void TunnelRelay::set_receiving(const std::string& session, TunnelEnd end, bool receiving) {
  if (lws* wsi = wsi_of(session, end)) lws_rx_flow_control(wsi, receiving ? 1 : 0);
}

Status TunnelRelay::admit(lws* wsi, const TunnelTarget& target, bool use_token) {
  // A browser always sends Origin; on the viewer end it must be the page's own server (no
  // cross-site WebSocket hijacking). Tools that send none rely on the token alone. The device
  // end is authenticated by its certificate; what lws clients put in Origin is not checked.
  // The session owner says which origins it admits (the server: its own; a gateway: none).
  if (target.end == TunnelEnd::kViewer) {
    std::optional<std::string> origin;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) > 0) {
      origin = header_text(wsi, WSI_TOKEN_ORIGIN);
    }
    if (!sessions_.viewer_origin_allowed(origin, header_text(wsi, WSI_TOKEN_HOST, 256))) {
      return make_error(Errc::kPermissionDenied,
                        "Origin " + origin.value_or("").substr(0, 100) + " is not this server");
    }
  }
  char buf[160] = {0};
  const char* token = lws_get_urlarg_by_name(wsi, "token=", buf, sizeof buf);
  if (token == nullptr) return make_error(Errc::kUnauthenticated, "no token");
  std::string device_id;
  if (target.end == TunnelEnd::kDevice) {
    auto id = peer_device_id(lws_get_ssl(wsi));
    if (!id.ok()) return id.error();
    device_id = *id;
  }
  if (use_token) return sessions_.join(target.session_id, target.end, token, device_id);
  return sessions_.check_join(target.session_id, target.end, token, device_id);
}

int TunnelRelay::confirm_upgrade(lws* wsi) {
  const auto target = parse_tunnel_path(header_text(wsi, WSI_TOKEN_GET_URI, 256));
  if (!target) return 0;
  auto admitted = admit(wsi, *target, false);
  if (admitted.ok()) return 0;
  log::notice(std::string("refused the ") + tunnel_end_name(target->end) + " end of session " +
              target->session_id + " from " + peer_of(wsi) + ": " + admitted.error().message);
  // Written by hand: before lws has looked at the request line, lws_return_http_status
  // would answer "HTTP/1.0", which WebSocket clients refuse to read.
  static constexpr char kBody[] = "403 Forbidden: not admitted to this tunnel\n";
  const std::string response =
      "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n"
      "content-length: " +
      std::to_string(sizeof kBody - 1) +
      "\r\ncache-control: no-store\r\nconnection: close\r\n\r\n" + kBody;
  std::vector<unsigned char> buf(LWS_PRE + response.size());
  std::memcpy(buf.data() + LWS_PRE, response.data(), response.size());
  if (lws_write(wsi, buf.data() + LWS_PRE, response.size(), LWS_WRITE_HTTP_HEADERS) !=
      static_cast<int>(response.size())) {
    return -1;
  }
  return 1;
}

int TunnelRelay::on_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                             std::size_t len) {
  auto* data = static_cast<EndData*>(user);
  switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
      if (data == nullptr) return 1;
      const auto target = parse_tunnel_path(header_text(wsi, WSI_TOKEN_GET_URI, 256));
      if (!target) {
        log::info("refused a tunnel WebSocket on an unknown path from " + peer_of(wsi));
        return 1;
      }
      auto admitted = admit(wsi, *target, true);
      if (!admitted.ok()) {
        log::notice(std::string("refused the ") + tunnel_end_name(target->end) +
                    " end of session " + target->session_id + " from " + peer_of(wsi) + ": " +
                    admitted.error().message);
        return 1;
      }
      std::memset(data, 0, sizeof *data);
      std::memcpy(data->session, target->session_id.data(), target->session_id.size());
      data->end = static_cast<int>(target->end);
      data->joined = true;
      return 0;
    }

    case LWS_CALLBACK_ESTABLISHED: {
      if (data == nullptr || !data->joined) return -1;
      const std::string id(data->session);
      const auto end = static_cast<TunnelEnd>(data->end);
      auto& ends = ends_[id];
      ends[static_cast<std::size_t>(end)] = wsi;
      log::debug(std::string("tunnel ") + tunnel_end_name(end) + " end of " + id + " open from " +
                 peer_of(wsi));
      sessions_.opened(id, end);
      return 0;
    }

    case LWS_CALLBACK_RECEIVE: {
      if (data == nullptr || !data->joined) return -1;
      const std::string id(data->session);
      const auto end = static_cast<TunnelEnd>(data->end);
      if (!lws_frame_is_binary(wsi)) {
        sessions_.received_text(id, end);
        return 0;
      }
      relayed_[static_cast<std::size_t>(end)].inc(static_cast<double>(len));
      sessions_.received(id, end, std::string_view(static_cast<const char*>(in), len));
      return 0;
    }

    case LWS_CALLBACK_SERVER_WRITEABLE: {
      if (data == nullptr || !data->joined) return 0;
      return write_end(wsi, std::string(data->session), static_cast<TunnelEnd>(data->end));
    }

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
      std::uint16_t code = 0;
      if (len >= 2 && in != nullptr) {
        const auto* b = static_cast<const unsigned char*>(in);
        code = static_cast<std::uint16_t>((b[0] << 8) | b[1]);
      }
      if (data != nullptr && data->joined) {
        log::debug(std::string("tunnel ") + tunnel_end_name(static_cast<TunnelEnd>(data->end)) +
                   " end of " + data->session + " closed by its peer with " + std::to_string(code));
      }
      return 0;
    }

    case LWS_CALLBACK_CLOSED: {
      if (data == nullptr || !data->joined) return 0;
      data->joined = false;
      end_closed(wsi, std::string(data->session), static_cast<TunnelEnd>(data->end));
      return 0;
    }

    default: break;
  }
  return 0;
}

int TunnelRelay::write_end(lws* wsi, const std::string& session, TunnelEnd end) {
  auto action = sessions_.take(session, end);
  if (auto* write = std::get_if<TunnelSplice::Write>(&action)) {
    const std::size_t n = write->data.size();
    // The buffer is kept between writes: no allocation per message.
    if (write_buf_.size() < LWS_PRE + n) write_buf_.resize(LWS_PRE + n);
    std::memcpy(write_buf_.data() + LWS_PRE, write->data.data(), n);
    if (lws_write(wsi, write_buf_.data() + LWS_PRE, n, LWS_WRITE_BINARY) < static_cast<int>(n)) {
      return -1;
    }
    return 0;
  }
  if (auto* close = std::get_if<TunnelSplice::Close>(&action)) {
    std::string text = close->reason.substr(0, 120);
    lws_close_reason(wsi, static_cast<lws_close_status>(close->code),
                     reinterpret_cast<unsigned char*>(text.data()), text.size());
    return -1;
  }
  return 0;
}

void TunnelRelay::end_closed(lws* wsi, const std::string& session, TunnelEnd end) {
  if (auto it = ends_.find(session); it != ends_.end()) {
    if (it->second[static_cast<std::size_t>(end)] == wsi) {
      it->second[static_cast<std::size_t>(end)] = nullptr;
    }
    if (it->second[0] == nullptr && it->second[1] == nullptr) ends_.erase(it);
  }
  sessions_.closed(session, end);
}

// ---- outbound ends (the server's leg to a gateway's viewer end) ---------------------------

Status TunnelRelay::start_client(lws_context* context, const TunnelClientSettings& settings) {
  if (client_vhost_ != nullptr) return {};
  client_settings_ = settings;
  client_protocols_[0] = {
      kTunnelSubprotocol, &TunnelRelay::client_callback, 0, 64 * 1024, 0, nullptr, 0};
  lws_context_creation_info info{};
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.vhost_name = "tunnel-client";
  info.protocols = client_protocols_;
  // Only our CA vouches for a gateway (never the system's); the gateway admits the server by
  // its link certificate.
  info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
  info.client_ssl_cert_filepath = client_settings_.certificate_path.c_str();
  info.client_ssl_private_key_filepath = client_settings_.key_path.c_str();
  info.client_ssl_ca_filepath = client_settings_.ca_path.c_str();
  info.user = this;
  client_vhost_ = lws_create_vhost(context, &info);
  if (client_vhost_ == nullptr) {
    return make_error(Errc::kUnavailable, "cannot create the tunnel client vhost (certificate " +
                                              client_settings_.certificate_path + ")");
  }
  client_context_ = context;
  return {};
}

Status TunnelRelay::connect_device_end(const std::string& session, const std::string& url) {
  if (client_vhost_ == nullptr) {
    return make_error(Errc::kUnavailable, "the relay has no client vhost (start_client)");
  }
  TETHER_ASSIGN_OR_RETURN(auto target, parse_tunnel_client_url(url));
  if (wsi_of(session, TunnelEnd::kDevice) != nullptr) {
    return make_error(Errc::kConflict, "the session's device end is open already");
  }
  auto owned = std::make_unique<ClientEnd>();
  ClientEnd* end = owned.get();
  end->session = session;
  clients_.emplace(end, std::move(owned));
  const std::string host_header =
      (target.host.find(':') != std::string::npos ? "[" + target.host + "]" : target.host) + ":" +
      std::to_string(target.port);
  lws_client_connect_info ci{};
  ci.context = client_context_;
  ci.vhost = client_vhost_;
  ci.address = target.host.c_str();
  ci.port = target.port;
  ci.path = target.path.c_str();
  ci.host = host_header.c_str();
  ci.ssl_connection = LCCSCF_USE_SSL;
  ci.protocol = kTunnelSubprotocol;
  ci.local_protocol_name = kTunnelSubprotocol;
  ci.opaque_user_data = end;
  ci.pwsi = &end->wsi;
  in_connect_ = true;
  lws* wsi = lws_client_connect_via_info(&ci);
  in_connect_ = false;
  if (wsi == nullptr || !end->error.empty()) {
    std::string why =
        end->error.empty() ? "cannot start a connection to " + host_header : end->error;
    if (end->wsi != nullptr) lws_set_opaque_user_data(end->wsi, nullptr);
    clients_.erase(end);
    return make_error(Errc::kUnavailable, why);
  }
  log::debug("tunnel: connecting the device end of " + session + " to " + host_header);
  return {};
}

int TunnelRelay::client_callback(lws* wsi, lws_callback_reasons reason, void* /*user*/, void* in,
                                 std::size_t len) {
  lws_vhost* vhost = lws_get_vhost(wsi);
  auto* self = vhost ? static_cast<TunnelRelay*>(lws_get_vhost_user(vhost)) : nullptr;
  if (self == nullptr || live_relays().count(self) == 0) return 0;
  try {
    return self->on_client(wsi, reason, in, len);
  } catch (const std::exception& e) {
    log::error(std::string("tunnel client handler failed: ") + e.what());
  } catch (...) {
    log::error("tunnel client handler failed");
  }
  return -1;
}

void TunnelRelay::client_failed(lws* wsi, ClientEnd* end, const std::string& why) {
  lws_set_opaque_user_data(wsi, nullptr);
  if (in_connect_) {
    end->error = why.empty() ? "the connection failed" : why;
    end->wsi = nullptr;
    return;  // connect_device_end reports it and forgets the end
  }
  const std::string session = end->session;
  clients_.erase(end);
  sessions_.connect_failed(session, TunnelEnd::kDevice,
                           why.empty() ? "the connection failed" : why);
}

int TunnelRelay::on_client(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len) {
  auto* end = static_cast<ClientEnd*>(lws_get_opaque_user_data(wsi));
  if (end != nullptr && clients_.count(end) == 0) end = nullptr;
  switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
      if (end == nullptr) return 0;
      std::string why = in != nullptr ? std::string(static_cast<const char*>(in), len) : "";
      if (!why.empty() && why.back() == '\0') why.pop_back();
      log::notice("tunnel: the device end of " + end->session +
                  " did not open: " + (why.empty() ? "connection failed" : why));
      client_failed(wsi, end, why);
      return 0;
    }

    case LWS_CALLBACK_CLIENT_ESTABLISHED: {
      if (end == nullptr) return -1;
      end->wsi = wsi;
      end->established = true;
      ends_[end->session][static_cast<std::size_t>(TunnelEnd::kDevice)] = wsi;
      log::debug("tunnel: the device end of " + end->session + " is open");
      sessions_.opened(end->session, TunnelEnd::kDevice);
      return 0;
    }

    case LWS_CALLBACK_CLIENT_RECEIVE: {
      if (end == nullptr || !end->established) return -1;
      if (!lws_frame_is_binary(wsi)) {
        sessions_.received_text(end->session, TunnelEnd::kDevice);
        return 0;
      }
      relayed_[static_cast<std::size_t>(TunnelEnd::kDevice)].inc(static_cast<double>(len));
      sessions_.received(end->session, TunnelEnd::kDevice,
                         std::string_view(static_cast<const char*>(in), len));
      return 0;
    }

    case LWS_CALLBACK_CLIENT_WRITEABLE: {
      if (end == nullptr || !end->established) return 0;
      return write_end(wsi, end->session, TunnelEnd::kDevice);
    }

    case LWS_CALLBACK_CLIENT_CLOSED: {
      if (end == nullptr) return 0;
      if (!end->established) {
        client_failed(wsi, end, "closed before it opened");
        return 0;
      }
      lws_set_opaque_user_data(wsi, nullptr);
      const std::string session = end->session;
      clients_.erase(end);
      end_closed(wsi, session, TunnelEnd::kDevice);
      return 0;
    }

    default: break;
  }
  return 0;
}

}  // namespace tether::server
