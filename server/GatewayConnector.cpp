#include "server/GatewayConnector.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/Log.h"

namespace tether::server {

using namespace protocol;

struct GatewayConnector::Link {
  GatewayConnector* owner = nullptr;
  std::string name;
  std::string url_text;
  ServerUrl url;
  std::string host_header;
  lws* wsi = nullptr;
  bool open = false;
  std::deque<std::string> queue;
  std::size_t queued_bytes = 0;
  std::optional<std::pair<int, std::string>> closing;
  std::string rx;
  bool rx_overflow = false;
  unsigned failures = 0;
  std::string last_error;
  int peer_close_code = 0;
  std::unique_ptr<LwsTimer> retry;
  lws_retry_bo_t idle{};
  // The gateway's channel id → the hub's connection id.
  std::unordered_map<std::uint64_t, ConnectionId> devices;
};

GatewayConnector::GatewayConnector(Store& store, DeviceHub& hub, GatewayConnectorSettings settings)
    : store_(store), hub_(hub), settings_(std::move(settings)) {
  protocols_[0].name = kLinkSubprotocol;
  protocols_[0].callback = &GatewayConnector::callback;
  protocols_[0].rx_buffer_size = 64 * 1024;
}

GatewayConnector::~GatewayConnector() {
  stop();
}

Status GatewayConnector::start(lws_context* context) {
  context_ = context;
  lws_context_creation_info info{};
  info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.vhost_name = "gateway-links";
  info.protocols = protocols_;
  info.client_ssl_cert_filepath = settings_.link_certificate_path.c_str();
  info.client_ssl_private_key_filepath = settings_.link_key_path.c_str();
  info.client_ssl_ca_filepath = settings_.ca_path.c_str();
  info.alpn = "http/1.1";
  vhost_ = lws_create_vhost(context, &info);
  if (vhost_ == nullptr) {
    return make_error(Errc::kUnavailable, "cannot set up the links to gateways (link certificate " +
                                              settings_.link_certificate_path + ")");
  }
  reload();
  return {};
}

void GatewayConnector::set_active(bool active) {
  if (active_ == active) return;
  active_ = active;
  if (active) {
    reload();
    return;
  }
  for (auto& [name, link] : links_) detach(*link);
  links_.clear();
}

void GatewayConnector::reload() {
  if (vhost_ == nullptr || !active_) return;
  auto gateways = store_.list_gateways();
  if (!gateways.ok()) {
    log::error("cannot read the gateways: " + gateways.error().message);
    return;
  }
  std::map<std::string, std::string> wanted;
  for (const auto& g : *gateways) {
    if (g.joined_at != 0) wanted[g.name] = g.url;
  }
  for (auto it = links_.begin(); it != links_.end();) {
    auto w = wanted.find(it->first);
    if (w == wanted.end() || w->second != it->second->url_text) {
      log::notice("gateway " + it->first + ": link dropped (" +
                  (w == wanted.end() ? "removed" : "its URL changed") + ")");
      detach(*it->second);
      it = links_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [name, url_text] : wanted) {
    if (links_.count(name) != 0) continue;
    auto url = parse_server_url(url_text);
    if (!url.ok()) {
      log::error("gateway " + name + ": bad URL " + url_text + ": " + url.error().message);
      continue;
    }
    auto link = std::make_unique<Link>();
    link->owner = this;
    link->name = name;
    link->url_text = url_text;
    link->url = *url;
    link->host_header =
        url->host.find(':') != std::string::npos ? "[" + url->host + "]" : url->host;
    link->idle.secs_since_valid_ping = settings_.ping_interval_s;
    link->idle.secs_since_valid_hangup = static_cast<std::uint16_t>(settings_.ping_interval_s * 2);
    Link* raw = link.get();
    link->retry = std::make_unique<LwsTimer>(context_, [this, raw] { connect(*raw); });
    links_.emplace(name, std::move(link));
    connect(*raw);
  }
}

std::size_t GatewayConnector::end_routed_devices(Link& link) {
  // The channels of the devices behind the gateway end in the hub now.
  auto devices = std::move(link.devices);
  link.devices.clear();
  for (const auto& [gateway_conn, conn] : devices) {
    routes_.erase(conn);
    hub_.on_closed(conn);
  }
  return devices.size();
}

void GatewayConnector::detach(Link& link) {
  end_routed_devices(link);
  if (link.retry) link.retry->cancel();
  if (link.wsi != nullptr) {
    lws_set_wsi_user(link.wsi, nullptr);
    lws_set_timeout(link.wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    link.wsi = nullptr;
  }
  link.open = false;
}

void GatewayConnector::stop() {
  for (auto& [name, link] : links_) detach(*link);
  links_.clear();
  vhost_ = nullptr;  // the context destroys it
}

void GatewayConnector::connect(Link& link) {
  if (link.wsi != nullptr || vhost_ == nullptr) return;
  link.queue.clear();
  link.queued_bytes = 0;
  link.closing.reset();
  link.rx.clear();
  link.rx_overflow = false;
  link.peer_close_code = 0;
  lws_client_connect_info info{};
  info.context = context_;
  info.vhost = vhost_;
  info.address = link.url.host.c_str();
  info.port = link.url.port;
  info.path = kLinkPath;
  info.host = link.host_header.c_str();
  info.origin = link.host_header.c_str();
  info.ssl_connection = LCCSCF_USE_SSL;
  info.protocol = kLinkSubprotocol;
  info.local_protocol_name = kLinkSubprotocol;
  info.userdata = &link;
  info.retry_and_idle_policy = &link.idle;
  lws* wsi = lws_client_connect_via_info(&info);
  // A synchronous failure has gone through CLIENT_CONNECTION_ERROR (which scheduled the
  // retry) or not at all.
  if (wsi == nullptr && !link.retry->pending()) {
    schedule_retry(link, "cannot start a connection");
  }
  if (wsi != nullptr) link.wsi = wsi;
}

void GatewayConnector::schedule_retry(Link& link, const std::string& why) {
  link.last_error = why;
  ++link.failures;
  // Full jitter over a capped exponential: a restarted gateway is not met by every server
  // (or a restarted server's every link) at the same instant.
  const auto cap = std::min<std::int64_t>(settings_.retry_cap.count(),
                                          settings_.retry_base.count()
                                              << std::min<unsigned>(link.failures - 1, 16));
  std::uniform_int_distribution<std::int64_t> pick(100, std::max<std::int64_t>(cap, 100));
  const auto delay = std::chrono::milliseconds(pick(rng_));
  log::info("gateway " + link.name + ": " + why + "; next attempt in " +
            std::to_string(delay.count()) + " ms");
  link.retry->schedule(std::chrono::duration_cast<std::chrono::microseconds>(delay));
}

int GatewayConnector::callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                               std::size_t len) {
  auto* link = static_cast<Link*>(user);
  if (link == nullptr || link->owner == nullptr) {
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  }
  try {
    return link->owner->handle(*link, wsi, reason, in, len);
  } catch (const std::exception& e) {
    log::error(std::string("gateway link handler failed: ") + e.what());
  } catch (...) {
    log::error("gateway link handler failed");
  }
  return -1;
}

int GatewayConnector::handle(Link& link, lws* wsi, lws_callback_reasons reason, void* in,
                             std::size_t len) {
  switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
      std::string why = "connection failed";
      if (in != nullptr)
        why.assign(static_cast<const char*>(in), strnlen(static_cast<const char*>(in), 256));
      if (const unsigned status = lws_http_client_http_response(wsi); status >= 300) {
        why = "the gateway refused the link (HTTP " + std::to_string(status) + ")";
      }
      lws_set_wsi_user(wsi, nullptr);
      link.wsi = nullptr;
      link_gone(link, why);
      return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
      link.wsi = wsi;
      link_open(link);
      return 0;

    case LWS_CALLBACK_CLIENT_RECEIVE: {
      if (lws_is_first_fragment(wsi)) {
        link.rx.clear();
        link.rx_overflow = false;
      }
      if (!link.rx_overflow) {
        if (link.rx.size() + len > kLinkMaxBytes) {
          link.rx.clear();
          link.rx_overflow = true;
          log::warning("gateway " + link.name + ": a link message over the size limit, dropped");
        } else {
          link.rx.append(static_cast<const char*>(in), len);
        }
      }
      if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
        std::string message = std::move(link.rx);
        link.rx.clear();
        if (!link.rx_overflow) on_link_message(link, message);
      }
      return 0;
    }

    case LWS_CALLBACK_CLIENT_WRITEABLE: return write(link, wsi);

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
      if (len >= 2 && in != nullptr) {
        const auto* b = static_cast<const unsigned char*>(in);
        link.peer_close_code = (b[0] << 8) | b[1];
      }
      return 0;

    case LWS_CALLBACK_CLIENT_CLOSED: {
      lws_set_wsi_user(wsi, nullptr);
      link.wsi = nullptr;
      link_gone(link, link.peer_close_code != 0 ? "the gateway closed the link (" +
                                                      std::to_string(link.peer_close_code) + ")"
                                                : "the link closed");
      return 0;
    }
    default: break;
  }
  return 0;
}

void GatewayConnector::link_open(Link& link) {
  link.open = true;
  link.failures = 0;
  link.last_error.clear();
  log::notice("gateway " + link.name + ": link open (" + link.url_text + ")");
  send_device_list(link);
}

void GatewayConnector::link_gone(Link& link, const std::string& why) {
  const bool was_open = link.open;
  link.open = false;
  const std::size_t ended = end_routed_devices(link);
  if (was_open) {
    log::notice("gateway " + link.name + ": link lost (" + why + "); " + std::to_string(ended) +
                " device channel(s) through it ended here");
  }
  schedule_retry(link, why);
}

void GatewayConnector::send_device_list(Link& link) {
  auto devices = store_.list_devices();
  if (!devices.ok()) {
    log::error("gateway " + link.name +
               ": cannot read the device list: " + devices.error().message);
    return;
  }
  std::vector<std::string> ids;
  for (const auto& d : *devices) {
    if (!d.revoked && !d.deleted) ids.push_back(d.id);
  }
  std::size_t sent = 0;
  do {
    LinkAllow chunk;
    chunk.reset = sent == 0;
    const std::size_t n = std::min(kLinkAllowChunk, ids.size() - sent);
    chunk.devices.assign(ids.begin() + static_cast<std::ptrdiff_t>(sent),
                         ids.begin() + static_cast<std::ptrdiff_t>(sent + n));
    sent += n;
    chunk.done = sent == ids.size();
    queue(link, encode_link_message(chunk));
  } while (sent < ids.size());
}

void GatewayConnector::on_link_message(Link& link, std::string_view text) {
  auto decoded = decode_link_message(text);
  if (!decoded.ok()) {
    log::warning("gateway " + link.name + ": bad link message: " + decoded.error().message);
    return;
  }
  std::visit(
      [this, &link](auto&& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, LinkHello>) {
          log::info("gateway " + link.name + " says hello (" + m.gateway + ", version " +
                    m.version + ", " + std::to_string(m.devices) + " device channel(s))");
        } else if constexpr (std::is_same_v<T, LinkConnected>) {
          end_device(link, m.conn);  // the same channel id announced twice: start over
          if (Status admitted = hub_.admit(m.device); !admitted.ok()) {
            queue(link, encode_link_message(LinkClose{m.conn, kCloseRevoked,
                                                      admitted.error().message.substr(0, 100)}));
            return;
          }
          const ConnectionId conn = next_connection_++;
          link.devices[m.conn] = conn;
          routes_[conn] = {link.name, m.conn};
          hub_.on_connected(conn, m.device, m.address, link.name);
        } else if constexpr (std::is_same_v<T, LinkClosed>) {
          end_device(link, m.conn);
        } else if constexpr (std::is_same_v<T, LinkUp>) {
          if (auto it = link.devices.find(m.conn); it != link.devices.end()) {
            hub_.on_message(it->second, m.text);
          }
        } else if constexpr (std::is_same_v<T, LinkHttp>) {
          forward_http(link, std::move(m));
        } else if constexpr (std::is_same_v<T, LinkTunnelEvent>) {
          if (tunnel_event_) tunnel_event_(link.name, m);
        } else {
          log::warning("gateway " + link.name + ": unexpected link message " +
                       std::string(link_message_type(LinkMessage(m))));
        }
      },
      std::move(*decoded));
}

void GatewayConnector::end_device(Link& link, std::uint64_t gateway_conn) {
  auto it = link.devices.find(gateway_conn);
  if (it == link.devices.end()) return;
  const ConnectionId conn = it->second;
  link.devices.erase(it);
  routes_.erase(conn);
  hub_.on_closed(conn);
}

void GatewayConnector::forward_http(Link& link, LinkHttp request) {
  const std::string name = link.name;
  const std::uint64_t id = request.id;
  if (request.method != "POST" || request.path != "/api/v1/enroll" || !http_handler_) {
    send_to(
        name,
        LinkHttpResult{
            id, 404, "application/json",
            R"({"error":{"code":"not_found","message":"a gateway passes on enrollment only"}})"});
    return;
  }
  HttpRequest r;
  r.method = request.method;
  r.path = request.path;
  r.body = std::move(request.body);
  r.peer_address = request.address;
  std::weak_ptr<GatewayConnector*> alive = alive_;
  const std::string gateway_url = link.url_text;
  http_handler_(r, [alive, name, id, gateway_url](HttpResponse response) {
    auto self = alive.lock();
    if (!self) return;
    // The device enrolled through the gateway stays with it: that is the URL it may reach.
    if (response.status == 201) {
      auto body = nlohmann::json::parse(response.body, nullptr, false);
      if (body.is_object() && body.contains("server_url")) {
        body["server_url"] = gateway_url;
        response.body = body.dump();
      }
    }
    (*self)->send_to(
        name, LinkHttpResult{id, response.status, response.content_type, std::move(response.body)});
  });
}

void GatewayConnector::queue(Link& link, std::string text) {
  if (!link.open || link.wsi == nullptr || link.closing) return;
  if (link.queued_bytes + text.size() > settings_.max_queued_bytes) {
    log::error("gateway " + link.name + ": the link is not draining; closing it");
    link.closing = std::make_pair(1008, std::string("send queue full"));
    link.queue.clear();
    link.queued_bytes = 0;
    lws_callback_on_writable(link.wsi);
    return;
  }
  link.queued_bytes += text.size();
  link.queue.push_back(std::move(text));
  lws_callback_on_writable(link.wsi);
}

int GatewayConnector::write(Link& link, lws* wsi) {
  if (link.closing && link.queue.empty()) {
    std::string& reason = link.closing->second;
    lws_close_reason(wsi, static_cast<lws_close_status>(link.closing->first),
                     reinterpret_cast<unsigned char*>(reason.data()),
                     std::min<std::size_t>(reason.size(), 120));
    return -1;
  }
  if (link.queue.empty()) return 0;
  std::string message = std::move(link.queue.front());
  link.queue.pop_front();
  link.queued_bytes -= message.size();
  std::vector<unsigned char> buf(LWS_PRE + message.size());
  std::memcpy(buf.data() + LWS_PRE, message.data(), message.size());
  if (lws_write(wsi, buf.data() + LWS_PRE, message.size(), LWS_WRITE_TEXT) <
      static_cast<int>(message.size())) {
    return -1;
  }
  if (!link.queue.empty() || link.closing) lws_callback_on_writable(wsi);
  return 0;
}

bool GatewayConnector::send_to(const std::string& gateway, const LinkMessage& message) {
  auto it = links_.find(gateway);
  if (it == links_.end() || !it->second->open) return false;
  queue(*it->second, encode_link_message(message));
  return true;
}

void GatewayConnector::device_allowed(const std::string& device_id) {
  for (auto& [name, link] : links_) {
    if (link->open) queue(*link, encode_link_message(LinkAllow{false, true, {device_id}}));
  }
}

void GatewayConnector::device_revoked(const std::string& device_id) {
  for (auto& [name, link] : links_) {
    if (link->open) queue(*link, encode_link_message(LinkRevoke{device_id}));
  }
}

std::optional<std::string> GatewayConnector::gateway_url(const std::string& name) const {
  auto it = links_.find(name);
  if (it == links_.end()) return std::nullopt;
  return it->second->url_text;
}

bool GatewayConnector::open_tunnel(const std::string& gateway, const GatewayTunnelOpen& open) {
  return send_to(gateway, LinkTunnelOpen{open.session_id, open.device_id, open.device_token,
                                         open.viewer_token, open.ttl.count()});
}

void GatewayConnector::close_tunnel(const std::string& gateway, const std::string& session_id,
                                    const std::string& reason) {
  (void)send_to(gateway, LinkTunnelClose{session_id, reason});
}

GatewayLinkState GatewayConnector::link_state(const std::string& name) const {
  GatewayLinkState s;
  auto it = links_.find(name);
  if (it == links_.end()) return s;
  const Link& link = *it->second;
  s.state = link.open ? "connected" : (link.wsi != nullptr ? "connecting" : "disconnected");
  s.devices = link.devices.size();
  s.last_error = link.last_error;
  return s;
}

std::size_t GatewayConnector::connected_links() const {
  return static_cast<std::size_t>(std::count_if(
      links_.begin(), links_.end(), [](const auto& entry) { return entry.second->open; }));
}

void GatewayConnector::send(ConnectionId connection, std::string text) {
  auto route = routes_.find(connection);
  if (route == routes_.end()) return;
  auto link = links_.find(route->second.first);
  if (link == links_.end()) return;
  queue(*link->second, encode_link_message(LinkUp{route->second.second, std::move(text)}));
}

void GatewayConnector::close(ConnectionId connection, int code, const std::string& reason) {
  auto route = routes_.find(connection);
  if (route == routes_.end()) return;
  auto link = links_.find(route->second.first);
  if (link == links_.end()) return;
  queue(*link->second,
        encode_link_message(LinkClose{route->second.second, code, reason.substr(0, 120)}));
}

}  // namespace tether::server
