#include "server/TunnelRelay.h"

#include <cstring>
#include <exception>
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

TunnelRelay::TunnelRelay(ShadowService& shadow) : shadow_(shadow) {
  shadow_.set_transport(this);
}

TunnelRelay::~TunnelRelay() {
  shadow_.set_transport(nullptr);
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
  if (target.end == TunnelEnd::kViewer) {
    std::optional<std::string> origin;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) > 0) {
      origin = header_text(wsi, WSI_TOKEN_ORIGIN);
    }
    if (!tunnel_origin_allowed(origin, header_text(wsi, WSI_TOKEN_HOST, 256))) {
      return make_error(Errc::kPermissionDenied,
                        "Origin " + origin->substr(0, 100) + " is not this server");
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
  if (use_token) return shadow_.join(target.session_id, target.end, token, device_id);
  return shadow_.check_join(target.session_id, target.end, token, device_id);
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
      shadow_.opened(id, end);
      return 0;
    }

    case LWS_CALLBACK_RECEIVE: {
      if (data == nullptr || !data->joined) return -1;
      const std::string id(data->session);
      const auto end = static_cast<TunnelEnd>(data->end);
      if (!lws_frame_is_binary(wsi)) {
        shadow_.received_text(id, end);
        return 0;
      }
      shadow_.received(id, end, std::string_view(static_cast<const char*>(in), len));
      return 0;
    }

    case LWS_CALLBACK_SERVER_WRITEABLE: {
      if (data == nullptr || !data->joined) return 0;
      const std::string id(data->session);
      auto action = shadow_.take(id, static_cast<TunnelEnd>(data->end));
      if (auto* write = std::get_if<TunnelSplice::Write>(&action)) {
        const std::size_t n = write->data.size();
        std::vector<unsigned char> buf(LWS_PRE + n);
        std::memcpy(buf.data() + LWS_PRE, write->data.data(), n);
        if (lws_write(wsi, buf.data() + LWS_PRE, n, LWS_WRITE_BINARY) < static_cast<int>(n)) {
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
      const std::string id(data->session);
      const auto end = static_cast<TunnelEnd>(data->end);
      if (auto it = ends_.find(id); it != ends_.end()) {
        if (it->second[static_cast<std::size_t>(end)] == wsi) {
          it->second[static_cast<std::size_t>(end)] = nullptr;
        }
        if (it->second[0] == nullptr && it->second[1] == nullptr) ends_.erase(it);
      }
      shadow_.closed(id, end);
      return 0;
    }

    default: break;
  }
  return 0;
}

}  // namespace tether::server
