#include "agent/ShadowTunnel.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "protocol/UpMessage.h"

namespace tether::agent {
namespace {

constexpr const char* kSocketProtocol = "tether-shadow-socket";

bool valid_port(std::string_view text, std::uint16_t& port) {
  if (text.empty() || text.size() > 5) return false;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) return false;
  port = static_cast<std::uint16_t>(value);
  return true;
}

}  // namespace

Result<TunnelEndpoint> parse_tunnel_url(std::string_view url, std::string_view token) {
  constexpr std::string_view kScheme = "wss://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return make_error(Errc::kBadValue, "tunnel_url must start with wss://");
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F || c == '#') {
      return make_error(Errc::kBadValue, "tunnel_url holds a character a URL may not");
    }
  }
  std::string_view rest = url.substr(kScheme.size());
  const std::size_t slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  std::string path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (path[0] == '?') path.insert(0, "/");
  if (authority.find('@') != std::string_view::npos) {
    return make_error(Errc::kBadValue, "tunnel_url may not carry user information");
  }
  TunnelEndpoint ep;
  std::string_view port_text;
  if (!authority.empty() && authority[0] == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return make_error(Errc::kBadValue, "tunnel_url: bad [");
    ep.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return make_error(Errc::kBadValue, "tunnel_url: bad host");
      port_text = after.substr(1);
    }
  } else {
    const std::size_t colon = authority.rfind(':');
    ep.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (ep.host.empty()) return make_error(Errc::kBadValue, "tunnel_url names no host");
  if (!port_text.empty() || authority.find(':') != std::string_view::npos) {
    if (!port_text.empty() && !valid_port(port_text, ep.port)) {
      return make_error(Errc::kBadValue, "tunnel_url: bad port");
    }
  }
  const std::size_t q = path.find('?');
  const bool has_token = q != std::string::npos && (path.find("?token=") != std::string::npos ||
                                                    path.find("&token=") != std::string::npos);
  if (!has_token) {
    if (token.empty()) return make_error(Errc::kMissingField, "no tunnel token");
    path += (q == std::string::npos ? "?token=" : "&token=");
    path += token;
  }
  ep.path = std::move(path);
  return ep;
}

lws_protocols ShadowTunnel::tunnel_protocol() {
  lws_protocols p{};
  p.name = protocol::kTunnelSubprotocol;
  p.callback = &ShadowTunnel::tunnel_callback;
  p.rx_buffer_size = kMaxMessage;
  return p;
}

lws_protocols ShadowTunnel::socket_protocol() {
  lws_protocols p{};
  p.name = kSocketProtocol;
  p.callback = &ShadowTunnel::socket_callback;
  return p;
}

Result<std::unique_ptr<ShadowTunnel>> ShadowTunnel::create(lws_context* ctx, lws_vhost* vhost,
                                                           UniqueFd socket,
                                                           ShadowTunnelListener& listener,
                                                           std::chrono::seconds ping_interval) {
  std::unique_ptr<ShadowTunnel> self(new ShadowTunnel(ctx, vhost, listener));
  // lws wants whole seconds and a hangup later than the ping (it asserts that).
  const auto ping =
      static_cast<std::uint16_t>(std::clamp<std::int64_t>(ping_interval.count(), 1, 16383));
  self->idle_policy_.secs_since_valid_ping = ping;
  self->idle_policy_.secs_since_valid_hangup = static_cast<std::uint16_t>(ping * 2);
  lws_adopt_desc_t desc{};
  desc.vh = vhost;
  desc.type = LWS_ADOPT_SOCKET;  // raw: no HTTP, no TLS
  desc.fd.sockfd = socket.get();
  desc.vh_prot_name = kSocketProtocol;
  desc.opaque = self.get();
  lws* wsi = lws_adopt_descriptor_vhost_via_info(&desc);
  // lws owns (and has closed, on failure) the socket now.
  (void)socket.release();
  if (wsi == nullptr) return make_error(Errc::kInternal, "cannot add the socket to the event loop");
  self->socket_wsi_ = wsi;
  return self;
}

ShadowTunnel::~ShadowTunnel() {
  detach_tunnel();
  detach_socket();
}

void ShadowTunnel::detach_tunnel() {
  if (tunnel_wsi_ == nullptr) return;
  lws_set_wsi_user(tunnel_wsi_, nullptr);
  lws_set_timeout(tunnel_wsi_, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
  tunnel_wsi_ = nullptr;
}

void ShadowTunnel::detach_socket() {
  if (socket_wsi_ == nullptr) return;
  lws_set_opaque_user_data(socket_wsi_, nullptr);
  lws_set_timeout(socket_wsi_, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
  socket_wsi_ = nullptr;
}

Status ShadowTunnel::connect(const TunnelEndpoint& endpoint) {
  if (tunnel_wsi_ != nullptr || reported_) {
    return make_error(Errc::kConflict, "the tunnel is already open or over");
  }
  host_ = endpoint.host;
  host_header_ = host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_;
  if (endpoint.port != 443) host_header_ += ":" + std::to_string(endpoint.port);
  path_ = endpoint.path;
  lws_client_connect_info info{};
  info.context = ctx_;
  info.vhost = vhost_;
  info.address = host_.c_str();
  info.port = endpoint.port;
  info.path = path_.c_str();
  info.host = host_header_.c_str();
  info.origin = host_header_.c_str();
  info.ssl_connection = LCCSCF_USE_SSL;
  info.protocol = protocol::kTunnelSubprotocol;
  info.local_protocol_name = protocol::kTunnelSubprotocol;
  info.userdata = this;
  info.retry_and_idle_policy = &idle_policy_;
  lws* wsi = lws_client_connect_via_info(&info);
  if (wsi == nullptr) {
    if (!reported_) return make_error(Errc::kUnavailable, "cannot start the tunnel connection");
    return {};
  }
  if (!reported_) tunnel_wsi_ = wsi;
  return {};
}

void ShadowTunnel::close(int code, const std::string& reason) {
  detach_socket();
  if (tunnel_wsi_ == nullptr) return;
  if (!established_) {
    detach_tunnel();
    return;
  }
  close_code_ = code;
  close_reason_ = reason.substr(0, 120);
  lws_callback_on_writable(tunnel_wsi_);
}

void ShadowTunnel::ended(bool tunnel_side, std::string error) {
  if (reported_) return;
  reported_ = true;
  end_.tunnel_side = tunnel_side;
  end_.tunnel_established = established_ || end_.tunnel_established;
  if (end_.error.empty()) end_.error = std::move(error);
  listener_.on_bridge_ended(end_);
}

int ShadowTunnel::tunnel_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                                  std::size_t len) {
  auto* self = static_cast<ShadowTunnel*>(user);
  if (self == nullptr) return lws_callback_http_dummy(wsi, reason, user, in, len);
  return self->handle_tunnel(wsi, reason, in, len);
}

int ShadowTunnel::socket_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                                  std::size_t len) {
  auto* self = static_cast<ShadowTunnel*>(lws_get_opaque_user_data(wsi));
  if (self == nullptr) {
    // A detached socket: anything it still reads is dropped; it is being closed.
    return reason == LWS_CALLBACK_RAW_RX ? 0 : lws_callback_http_dummy(wsi, reason, user, in, len);
  }
  return self->handle_socket(wsi, reason, in, len);
}

int ShadowTunnel::handle_tunnel(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len) {
  switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
      std::string why = "tunnel connection failed";
      if (in != nullptr) {
        why += ": ";
        why.append(static_cast<const char*>(in), strnlen(static_cast<const char*>(in), 256));
      }
      if (const unsigned status = lws_http_client_http_response(wsi); status >= 300) {
        why = "the server refused the tunnel (HTTP " + std::to_string(status) + ")";
      }
      lws_set_wsi_user(wsi, nullptr);
      tunnel_wsi_ = nullptr;
      ended(true, why);
      listener_.on_tunnel_gone();
      return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
      established_ = true;
      end_.tunnel_established = true;
      if (!to_tunnel_.empty()) lws_callback_on_writable(wsi);
      listener_.on_tunnel_open();
      return 0;

    case LWS_CALLBACK_CLIENT_RECEIVE:
      if (!lws_frame_is_binary(wsi)) {
        close_code_ = LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE;
        close_reason_ = "text messages are not part of the tunnel";
        lws_callback_on_writable(wsi);
        return 0;
      }
      if (socket_wsi_ == nullptr) return 0;  // tether-vnc is gone; the end is being reported
      to_socket_.append(static_cast<const char*>(in), len);
      bytes_down_ += len;
      lws_callback_on_writable(socket_wsi_);
      if (to_socket_.size() >= kMaxBuffered && !tunnel_paused_) {
        tunnel_paused_ = true;
        lws_rx_flow_control(wsi, 0);
      }
      return 0;

    case LWS_CALLBACK_CLIENT_WRITEABLE: {
      // What tether-vnc sent goes out before a close: the viewer sees the last frames.
      if (!to_tunnel_.empty() && close_code_ != LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE) {
        const std::size_t n = std::min(to_tunnel_.size(), kMaxMessage);
        std::vector<unsigned char> buf(LWS_PRE + n);
        std::memcpy(buf.data() + LWS_PRE, to_tunnel_.data(), n);
        if (lws_write(wsi, buf.data() + LWS_PRE, n, LWS_WRITE_BINARY) < static_cast<int>(n)) {
          end_.error = "tunnel write failed";
          return -1;
        }
        to_tunnel_.erase(0, n);
        bytes_up_ += n;
        if (socket_paused_ && to_tunnel_.size() < kMaxBuffered / 2 && socket_wsi_ != nullptr) {
          socket_paused_ = false;
          lws_rx_flow_control(socket_wsi_, 1);
        }
        if (!to_tunnel_.empty() || close_code_ != 0) lws_callback_on_writable(wsi);
        return 0;
      }
      if (close_code_ != 0) {
        lws_close_reason(wsi, static_cast<lws_close_status>(close_code_),
                         reinterpret_cast<unsigned char*>(close_reason_.data()),
                         close_reason_.size());
        if (end_.error.empty()) end_.error = "closed by the agent: " + close_reason_;
        return -1;
      }
      return 0;
    }

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
      if (len >= 2) {
        const auto* p = static_cast<const unsigned char*>(in);
        end_.close_code = (p[0] << 8) | p[1];
        end_.close_reason.assign(reinterpret_cast<const char*>(p + 2),
                                 std::min<std::size_t>(len - 2, 123));
      }
      return 0;

    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
      lws_set_wsi_user(wsi, nullptr);
      tunnel_wsi_ = nullptr;
      established_ = false;
      ended(true, end_.close_code != 0 ? "the server closed the tunnel" : "the tunnel was lost");
      listener_.on_tunnel_gone();
      return 0;

    default: break;
  }
  return lws_callback_http_dummy(wsi, reason, this, in, len);
}

int ShadowTunnel::handle_socket(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len) {
  switch (reason) {
    case LWS_CALLBACK_RAW_RX:
      to_tunnel_.append(static_cast<const char*>(in), len);
      if (!greeted_) {
        greeted_ = true;
        listener_.on_vnc_greeting();
      }
      if (tunnel_wsi_ != nullptr && established_) lws_callback_on_writable(tunnel_wsi_);
      if (to_tunnel_.size() >= kMaxBuffered && !socket_paused_) {
        socket_paused_ = true;
        lws_rx_flow_control(wsi, 0);
      }
      return 0;

    case LWS_CALLBACK_RAW_WRITEABLE: {
      if (to_socket_.empty()) return 0;
      const std::size_t n = std::min(to_socket_.size(), kMaxMessage);
      std::vector<unsigned char> buf(LWS_PRE + n);
      std::memcpy(buf.data() + LWS_PRE, to_socket_.data(), n);
      if (lws_write(wsi, buf.data() + LWS_PRE, n, LWS_WRITE_RAW) < static_cast<int>(n)) {
        end_.error = "cannot write to tether-vnc";
        return -1;
      }
      to_socket_.erase(0, n);
      if (tunnel_paused_ && to_socket_.size() < kMaxBuffered / 2 && tunnel_wsi_ != nullptr) {
        tunnel_paused_ = false;
        lws_rx_flow_control(tunnel_wsi_, 1);
      }
      if (!to_socket_.empty()) lws_callback_on_writable(wsi);
      return 0;
    }

    case LWS_CALLBACK_RAW_CLOSE:
      lws_set_opaque_user_data(wsi, nullptr);
      socket_wsi_ = nullptr;
      ended(false, "tether-vnc closed its end");
      return 0;

    default: break;
  }
  return lws_callback_http_dummy(wsi, reason, nullptr, in, len);
}

}  // namespace tether::agent
