#include "server/GatewayRouter.h"

#include <openssl/x509.h>

#include <nlohmann/json.hpp>

#include "common/Log.h"
#include "protocol/UpMessage.h"
#include "server/CertificateAuthority.h"

namespace tether::server {
namespace {

using namespace protocol;

std::string short_id(const std::string& id) {
  return id.substr(0, 12);
}

std::string common_name(X509* cert) {
  X509_NAME* name = X509_get_subject_name(cert);
  const int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (i < 0) return {};
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
  const unsigned char* bytes = ASN1_STRING_get0_data(data);
  return std::string(reinterpret_cast<const char*>(bytes),
                     static_cast<std::size_t>(ASN1_STRING_length(data)));
}

}  // namespace

Result<std::string> GatewayRouter::LinkSide::identify(SSL* ssl) {
  if (ssl == nullptr) return make_error(Errc::kUnauthenticated, "not a TLS connection");
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr) return make_error(Errc::kUnauthenticated, "no client certificate");
  if (SSL_get_verify_result(ssl) != X509_V_OK) {
    return make_error(Errc::kUnauthenticated, "the client certificate did not verify");
  }
  if (common_name(peer) != kServerLinkCommonName) {
    return make_error(Errc::kPermissionDenied,
                      "only the server's link certificate may open the link");
  }
  return std::string("server");
}

GatewayRouter::GatewayRouter(UpTransport& transport, GatewayRouterSettings settings)
    : transport_(transport), settings_(std::move(settings)) {}

// ---- devices ------------------------------------------------------------------------------

Status GatewayRouter::admit_device(const std::string& device, const std::string& address) {
  (void)address;
  // Before the server's first list (the gateway just started) a device with a certificate
  // of the CA is let in on probation: it hears "unavailable", what it sends is dropped, and
  // when the list comes it stays or is closed (apply_allow). Refusing it instead would send
  // every agent into its failure backoff at the same moment: a reconnect storm.
  if (list_loaded_ && allowed_.count(device) == 0) {
    ++counters_.refused_unknown;
    return make_error(Errc::kPermissionDenied,
                      "device " + short_id(device) + " is not known to the server or revoked");
  }
  // A device connecting again replaces its older channel: it does not count twice.
  if (channels_.size() >= settings_.max_connections && channel_of_device_.count(device) == 0) {
    ++counters_.refused_limit;
    return make_error(Errc::kUnavailable, "device " + short_id(device) +
                                              ": connection limit reached (" +
                                              std::to_string(settings_.max_connections) + ")");
  }
  return {};
}

void GatewayRouter::device_connected(ConnectionId c, const std::string& device,
                                     const std::string& address) {
  if (auto old = channel_of_device_.find(device); old != channel_of_device_.end()) {
    const ConnectionId previous = old->second;
    channel_of_device_.erase(old);
    if (channels_.erase(previous) != 0 && link_) to_link(LinkClosed{previous});
    transport_.close(previous, kCloseReplaced, "replaced");
  }
  DeviceChannel& channel = channels_[c];
  channel.device = device;
  channel.address = address;
  channel_of_device_[device] = c;
  if (link_) announce(c, channel);
  send_gateway_status(c, link_.has_value());
}

void GatewayRouter::device_message(ConnectionId c, std::string_view text) {
  if (channels_.count(c) == 0) return;
  if (!link_) {
    ++counters_.dropped_messages;
    return;
  }
  to_link(LinkUp{c, std::string(text)});
}

void GatewayRouter::device_closed(ConnectionId c) {
  auto it = channels_.find(c);
  if (it == channels_.end()) return;
  if (auto d = channel_of_device_.find(it->second.device);
      d != channel_of_device_.end() && d->second == c) {
    channel_of_device_.erase(d);
  }
  channels_.erase(it);
  if (link_) to_link(LinkClosed{c});
}

void GatewayRouter::send_gateway_status(ConnectionId c, bool server_connected) {
  Envelope e;
  e.type = "gateway_status";
  e.id = "g" + std::to_string(next_status_id_++);
  e.body = {{"server", server_connected ? "connected" : "unavailable"}};
  transport_.send(c, serialize_envelope(e));
}

void GatewayRouter::announce(ConnectionId c, const DeviceChannel& channel) {
  to_link(LinkConnected{c, channel.device, channel.address});
}

void GatewayRouter::close_device(const std::string& device, int code, const std::string& reason) {
  auto it = channel_of_device_.find(device);
  if (it == channel_of_device_.end()) return;
  transport_.close(it->second, code, reason);
}

// ---- the link -----------------------------------------------------------------------------

void GatewayRouter::to_link(const LinkMessage& message) {
  if (link_) transport_.send(*link_, encode_link_message(message));
}

void GatewayRouter::link_connected(ConnectionId c, const std::string& address) {
  if (link_) {
    // The server came back before the old link was found dead: the new one wins.
    const ConnectionId old = *link_;
    link_closed(old);
    transport_.close(old, kCloseReplaced, "replaced by a newer link");
  }
  link_ = c;
  log::notice("the server connected from " + address + " (" + std::to_string(channels_.size()) +
              " device channel(s) open)");
  to_link(LinkHello{settings_.name, settings_.version, channels_.size()});
  // Every open channel is announced, then its agent is told so that it says hello again.
  for (const auto& [id, channel] : channels_) announce(id, channel);
  for (const auto& [id, channel] : channels_) send_gateway_status(id, true);
}

void GatewayRouter::link_closed(ConnectionId c) {
  if (!link_ || *link_ != c) return;
  link_.reset();
  receiving_list_ = false;
  incoming_list_.clear();
  log::notice("the server's link closed; " + std::to_string(channels_.size()) +
              " device channel(s) stay open and wait for it");
  for (const auto& [id, channel] : channels_) send_gateway_status(id, false);
  fail_waiting_http(503, "the gateway lost its link to the server");
}

void GatewayRouter::link_message(ConnectionId c, std::string_view text) {
  if (!link_ || *link_ != c) return;
  auto decoded = decode_link_message(text);
  if (!decoded.ok()) {
    log::warning("bad message on the server's link: " + decoded.error().message);
    return;
  }
  std::visit(
      [this](auto&& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, LinkAllow>) {
          apply_allow(std::move(m));
        } else if constexpr (std::is_same_v<T, LinkRevoke>) {
          allowed_.erase(m.device);
          incoming_list_.erase(m.device);
          close_device(m.device, kCloseRevoked, "revoked");
        } else if constexpr (std::is_same_v<T, LinkClose>) {
          if (channels_.count(m.conn) != 0) transport_.close(m.conn, m.code, m.reason);
        } else if constexpr (std::is_same_v<T, LinkUp>) {
          if (channels_.count(m.conn) != 0) transport_.send(m.conn, std::move(m.text));
        } else if constexpr (std::is_same_v<T, LinkHttpResult>) {
          answer_http(m);
        } else if constexpr (std::is_same_v<T, LinkTunnelOpen>) {
          Status opened =
              tunnels_.open ? tunnels_.open(m) : make_error(Errc::kUnavailable, "no tunnels here");
          if (!opened.ok()) {
            log::warning("cannot open tunnel session " + m.session + ": " + opened.error().message);
            tunnel_event(m.session, "ended", "refused");
          }
        } else if constexpr (std::is_same_v<T, LinkTunnelClose>) {
          if (tunnels_.close) tunnels_.close(m.session, m.reason);
        } else {
          log::warning("unexpected link message from the server: " +
                       std::string(link_message_type(LinkMessage(m))));
        }
      },
      std::move(*decoded));
}

void GatewayRouter::apply_allow(LinkAllow allow) {
  if (allow.reset) {
    incoming_list_.clear();
    receiving_list_ = true;
  }
  if (receiving_list_) {
    incoming_list_.insert(allow.devices.begin(), allow.devices.end());
  } else {
    allowed_.insert(allow.devices.begin(), allow.devices.end());
  }
  if (!allow.done || !receiving_list_) return;
  allowed_ = std::move(incoming_list_);
  incoming_list_.clear();
  receiving_list_ = false;
  list_loaded_ = true;
  // Channels of devices the server no longer lists end now.
  std::vector<ConnectionId> gone;
  for (const auto& [id, channel] : channels_) {
    if (allowed_.count(channel.device) == 0) gone.push_back(id);
  }
  for (ConnectionId id : gone) transport_.close(id, kCloseRevoked, "revoked");
  log::info("device list from the server: " + std::to_string(allowed_.size()) + " device(s)");
}

// ---- HTTPS --------------------------------------------------------------------------------

void GatewayRouter::handle_http(const HttpRequest& request, HttpRespond respond) {
  if (request.path == "/healthz" && (request.method == "GET" || request.method == "HEAD")) {
    respond(json_response(200, {{"gateway", settings_.name},
                                {"server", link_ ? "connected" : "unavailable"},
                                {"devices", channels_.size()}}));
    return;
  }
  if (request.path != "/api/v1/enroll") {
    respond(error_response(404, Errc::kNotFound,
                           "a gateway serves device channels, tunnels and enrollment only"));
    return;
  }
  if (request.method != "POST") {
    respond(error_response(405, Errc::kInvalidArgument, "enrollment is a POST"));
    return;
  }
  if (!link_) {
    HttpResponse r = error_response(503, Errc::kUnavailable,
                                    "the gateway cannot reach its server now; try again later");
    r.headers.emplace_back("Retry-After", "30");
    respond(std::move(r));
    return;
  }
  const std::uint64_t id = next_http_id_++;
  http_[id] = PendingHttp{std::move(respond), SteadyClock::now() + settings_.http_timeout};
  to_link(LinkHttp{id, request.method, request.path, request.body, request.peer_address});
}

void GatewayRouter::answer_http(const LinkHttpResult& result) {
  auto it = http_.find(result.id);
  if (it == http_.end()) return;
  HttpRespond respond = std::move(it->second.respond);
  http_.erase(it);
  HttpResponse r;
  r.status = result.status;
  r.content_type = result.content_type;
  r.body = result.body;
  respond(std::move(r));
}

void GatewayRouter::fail_waiting_http(int status, const std::string& why) {
  auto waiting = std::move(http_);
  http_.clear();
  for (auto& [id, pending] : waiting) {
    pending.respond(
        error_response(status, status == 504 ? Errc::kTimeout : Errc::kUnavailable, why));
  }
}

void GatewayRouter::expire(SteadyClock::time_point now) {
  std::vector<HttpRespond> late;
  for (auto it = http_.begin(); it != http_.end();) {
    if (it->second.deadline <= now) {
      late.push_back(std::move(it->second.respond));
      it = http_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& respond : late) {
    respond(error_response(504, Errc::kTimeout, "the server did not answer through the gateway"));
  }
}

void GatewayRouter::tunnel_event(const std::string& session, const std::string& event,
                                 const std::string& reason) {
  to_link(LinkTunnelEvent{session, event, reason});
}

void GatewayRouter::close_all() {
  for (const auto& [id, channel] : channels_) {
    transport_.close(id, kCloseServiceRestart, kRestartCloseReason);
  }
  if (link_) transport_.close(*link_, kCloseServiceRestart, kRestartCloseReason);
  fail_waiting_http(503, "the gateway is stopping");
}

}  // namespace tether::server
