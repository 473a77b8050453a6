#include "server/HttpsServer.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <ctime>
#include <exception>

#include "common/Log.h"
#include "platform/ClockDiagnosis.h"
#include "platform/Pki.h"
#include "protocol/UpMessage.h"
#include "server/ChannelMetrics.h"
#include "server/TunnelRelay.h"

namespace tether::server {
namespace {

// A tunnel end's per-session data: the keepalive's, then the relay's own.
struct TunnelSessionData {
  WsKeepalive keepalive;
  TunnelRelay::EndData end;
};

constexpr std::size_t kUpRxLimit = 256 * 1024;  // the UP message size limit
// A link message wraps one UP message, escaped as a JSON string (up to six bytes for one).
constexpr std::size_t kLinkRxLimit = 2 * 1024 * 1024;
constexpr const char* kLinkSubprotocol = "tether.gateway.v1";
constexpr const char* kChannelPaths[2] = {"/up", "/link"};
constexpr std::size_t kHttpChunk = 16 * 1024;
constexpr std::chrono::seconds kUpCloseTimeout{5};
constexpr int kHttpWriteTimeoutSeconds = 60;

HttpsServer* owner(lws* wsi) {
  return static_cast<HttpsServer*>(lws_context_user(lws_get_context(wsi)));
}

std::string header(lws* wsi, lws_token_indexes token, std::size_t max = 4096) {
  const int len = lws_hdr_total_length(wsi, token);
  if (len <= 0 || static_cast<std::size_t>(len) > max) return {};
  std::string out(static_cast<std::size_t>(len) + 1, '\0');
  const int copied = lws_hdr_copy(wsi, out.data(), static_cast<int>(out.size()), token);
  if (copied < 0) return {};
  out.resize(static_cast<std::size_t>(copied));
  return out;
}

std::string method_of(lws* wsi) {
  static const std::pair<lws_token_indexes, const char*> kMethods[] = {
      {WSI_TOKEN_GET_URI, "GET"},     {WSI_TOKEN_POST_URI, "POST"},
      {WSI_TOKEN_PUT_URI, "PUT"},     {WSI_TOKEN_DELETE_URI, "DELETE"},
      {WSI_TOKEN_PATCH_URI, "PATCH"}, {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
      {WSI_TOKEN_HEAD_URI, "HEAD"},
  };
  for (const auto& [token, name] : kMethods) {
    if (lws_hdr_total_length(wsi, token) > 0) return name;
  }
  return "?";
}

std::string peer_address(lws* wsi) {
  char buf[128] = {0};
  const char* p = lws_get_peer_simple(wsi, buf, sizeof buf);
  std::string out = p ? p : "";
  // lws reports IPv4 peers on a dual-stack socket as ::ffff:a.b.c.d.
  if (out.rfind("::ffff:", 0) == 0 && out.find('.') != std::string::npos) out = out.substr(7);
  return out;
}

const char* channel_name(ChannelKind kind) {
  return kind == ChannelKind::kLink ? "link" : "up";
}

bool is_any_address(const std::string& host) {
  return host == "0.0.0.0" || host == "::" || host == "*";
}

bool is_ipv4(const std::string& host) {
  in_addr a{};
  return ::inet_pton(AF_INET, host.c_str(), &a) == 1;
}

}  // namespace

Result<std::string> peer_device_id(SSL* ssl) {
  if (ssl == nullptr) return make_error(Errc::kUnauthenticated, "not a TLS connection");
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr) return make_error(Errc::kUnauthenticated, "no client certificate");
  if (SSL_get_verify_result(ssl) != X509_V_OK) {
    return make_error(Errc::kUnauthenticated, "the client certificate did not verify");
  }
  EVP_PKEY* key = X509_get0_pubkey(peer);
  if (key == nullptr) return make_error(Errc::kUnauthenticated, "client certificate without key");
  TETHER_ASSIGN_OR_RETURN(auto spki, pki::spki_sha256(key));
  return pki::to_hex(spki);
}

// The server's DeviceHub as the sink of /up channels.
class HttpsServer::HubSink final : public ChannelSink {
 public:
  explicit HubSink(DeviceHub& hub) : hub_(hub) {}
  Result<std::string> identify(SSL* ssl) override { return peer_device_id(ssl); }
  Status admit(const std::string& peer, const std::string&) override { return hub_.admit(peer); }
  void on_connected(ConnectionId c, const std::string& peer, const std::string& address) override {
    hub_.on_connected(c, peer, address);
  }
  void on_message(ConnectionId c, std::string_view text) override { hub_.on_message(c, text); }
  void on_closed(ConnectionId c) override { hub_.on_closed(c); }

 private:
  DeviceHub& hub_;
};

void HttpsServer::set_hub(DeviceHub* hub) {
  hub_sink_ = hub != nullptr ? std::make_unique<HubSink>(*hub) : nullptr;
  sinks_[static_cast<int>(ChannelKind::kUp)] = hub_sink_.get();
}

std::size_t HttpsServer::channel_count(ChannelKind kind) const noexcept {
  std::size_t n = 0;
  for (const auto& [id, conn] : up_) n += conn.kind == kind ? 1 : 0;
  return n;
}

ChannelKind HttpsServer::kind_of(lws* wsi) {
  const lws_protocols* p = lws_get_protocol(wsi);
  return p != nullptr && p->name != nullptr && std::strcmp(p->name, kLinkSubprotocol) == 0
             ? ChannelKind::kLink
             : ChannelKind::kUp;
}

HttpsServer::HttpsServer(HttpsServerOptions options) : options_(std::move(options)) {
  protocols_[0].name = "http";
  protocols_[0].callback = &HttpsServer::http_callback;
  protocols_[1].name = protocol::kUpSubprotocol;
  protocols_[1].callback = &HttpsServer::up_callback;
  protocols_[1].per_session_data_size = sizeof(UpSessionData);
  // lws gives every UP connection a receive buffer of this size; on_up reassembles messages
  // from its pieces, so a small one only means more callbacks for a large message, and an
  // idle fleet does not hold 64 KiB (or even 4 KiB) per device (bench/fleet: 1 KiB instead
  // of 4 took 2.9 KB off each connection). Sends stay up to 64 KiB.
  protocols_[1].rx_buffer_size = 1024;
  protocols_[1].tx_packet_size = 64 * 1024;
  // The shadowing tunnels (docs/protocol.md §5): device ends and tools speak
  // tether.tunnel.v1, noVNC asks for "binary". Received data comes in pieces of at most
  // rx_buffer_size, each relayed as one message (≤ 64 KiB).
  for (std::size_t i : {std::size_t{2}, std::size_t{3}}) {
    protocols_[i].name = i == 2 ? kTunnelSubprotocol : kBinarySubprotocol;
    protocols_[i].callback = &HttpsServer::tunnel_callback;
    protocols_[i].per_session_data_size = sizeof(TunnelSessionData);
    protocols_[i].rx_buffer_size = 64 * 1024;
  }
  protocols_[4].name = kLinkSubprotocol;
  protocols_[4].callback = &HttpsServer::up_callback;
  protocols_[4].per_session_data_size = sizeof(UpSessionData);
  protocols_[4].rx_buffer_size = 64 * 1024;
  // No keepalive from lws (its validity timers cost O(connections) per pong, see
  // KeepaliveWheel.h): all zero here, and the context's default policy is not used.
  retry_.secs_since_valid_ping = 0;
  retry_.secs_since_valid_hangup = 0;
}

HttpsServer::~HttpsServer() {
  stop();
}

void HttpsServer::stop() {
  // Destroying the context runs close callbacks that reach into our members: do it while
  // they are all still alive. Answers that those callbacks set off (the hub failing a
  // device's requests) are for connections that are closing too: drop them.
  stopping_ = true;
  exchange_timer_.reset();
  close_timer_.reset();
  if (keepalive_) keepalive_->stop();
  context_.reset();
  keepalive_.reset();
  exchanges_.clear();
  exchange_by_wsi_.clear();
  up_.clear();
  stopping_ = false;
}

std::size_t HttpsServer::open_exchange_count() const noexcept {
  std::size_t n = 0;
  for (const auto& [id, exchange] : exchanges_) n += exchange.dispatched;
  return n;
}

std::size_t HttpsServer::waiting_exchange_count() const noexcept {
  std::size_t n = 0;
  for (const auto& [id, exchange] : exchanges_) n += exchange.dispatched && !exchange.responding;
  return n;
}

Status HttpsServer::start() {
  for (const auto& pem : options_.client_ca_pems) {
    TETHER_ASSIGN_OR_RETURN(auto cert, pki::certificate_from_pem(pem));
    client_cas_.push_back(std::move(cert));
  }
  lws_context_creation_info info{};
  const std::string& host = options_.listen.host;
  info.port = options_.listen.port;
  info.iface = is_any_address(host) ? nullptr : host.c_str();
  info.protocols = protocols_;
  info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  // Client certificates are asked for but optional (the API and enrollment need none); one
  // that is presented must chain to our CAs, and /up admits only known devices.
  info.options |= LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
  info.options |= LWS_SERVER_OPTION_PEER_CERT_NOT_REQUIRED;
  info.options |= LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
  info.options |= LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
  // RFC 6455 §8.1: a text message (or close reason) that is not UTF-8 fails the connection
  // (1007), checked by lws as it arrives, whatever the size of the message.
  info.options |= LWS_SERVER_OPTION_VALIDATE_UTF8;
  // An IPv4 address (or 0.0.0.0) means IPv4 only: without this lws opens a dual-stack
  // socket and the bind address would not be what the admin asked for.
  if (host == "0.0.0.0" || is_ipv4(host)) info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
  info.ssl_cert_filepath = options_.certificate_path.c_str();
  info.ssl_private_key_filepath = options_.key_path.c_str();
  // HTTP/2 would change how WebSockets are carried; the UP channel and the API speak 1.1.
  info.alpn = "http/1.1";
  info.retry_and_idle_policy = &retry_;
  info.max_http_header_data = 4096;
  // Slow or silent clients (tests/integration/test_slow_clients.py): a connection that has
  // not finished its TLS handshake and request headers within 10 s, or its negotiation within
  // 5 s of TLS, is cut off, however slowly it keeps sending. lws 4.1.6's own defaults, set
  // here so that they stay what the docs say.
  info.timeout_secs = 5;
  info.timeout_secs_ah_idle = 10;
  // lws reads at most this much per turn of the loop for a connection (4 KiB by default): a
  // shadowing tunnel would then be relayed 4 KiB per turn (bench/relay). One buffer per
  // context, not per connection.
  info.pt_serv_buf_size = 64 * 1024 + LWS_PRE;
  info.vhost_name = "tether";
  info.user = this;
  context_.reset(lws_create_context(&info));
  if (!context_) {
    return make_error(Errc::kUnavailable, "cannot listen on " + host + ":" +
                                              std::to_string(options_.listen.port) +
                                              " (see the messages above)");
  }
  exchange_timer_ = std::make_unique<LwsTimer>(context_.get(), [this] { expire_exchanges(); });
  close_timer_ = std::make_unique<LwsTimer>(context_.get(), [this] { cut_off_unclosed(); });
  keepalive_ = std::make_unique<KeepaliveWheel>(
      context_.get(),
      std::chrono::seconds(std::clamp<std::int64_t>(options_.ping_interval.count(), 1, 3600)));
  return {};
}

void HttpsServer::load_client_cas(SSL_CTX* ctx) {
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  for (const auto& ca : client_cas_) {
    X509_STORE_add_cert(store, ca.get());
    SSL_CTX_add_client_CA(ctx, ca.get());
  }
  // No session resumption: neither the agent (lws 4.1.6's client keeps no sessions) nor
  // tetherctl resumes, so the two TLS 1.3 tickets OpenSSL would encrypt and send after
  // every handshake (each holding the device's certificate) are work for nothing, and a
  // TLS 1.2 session cache would hold one session per device.
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  // Not SSL_MODE_RELEASE_BUFFERS: an idle connection's memory hardly changes with it
  // (bench/fleet: OpenSSL 3 already holds no record buffers between records there), and a
  // shadowing tunnel would free and allocate them for every record.
}

int HttpsServer::http_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                               std::size_t len) {
  HttpsServer* self = owner(wsi);
  if (self == nullptr) return lws_callback_http_dummy(wsi, reason, user, in, len);
  try {
    return self->on_http(wsi, reason, user, in, len);
  } catch (const std::exception& e) {
    log::error(std::string("HTTP handler failed: ") + e.what());
  } catch (...) {
    log::error("HTTP handler failed");
  }
  return -1;
}

int HttpsServer::up_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                             std::size_t len) {
  HttpsServer* self = owner(wsi);
  if (self == nullptr) return 0;
  auto* session = static_cast<UpSessionData*>(user);
  try {
    int rc = 0;
    if (self->keepalive_event(wsi, reason, session ? &session->keepalive : nullptr, rc)) return rc;
    rc = self->on_up(wsi, reason, session, in, len);
    if (rc == 0 && reason == LWS_CALLBACK_ESTABLISHED && session != nullptr && self->keepalive_) {
      self->keepalive_->add(session->keepalive, wsi);
    }
    return rc;
  } catch (const std::exception& e) {
    log::error(std::string("UP handler failed: ") + e.what());
  } catch (...) {
    log::error("UP handler failed");
  }
  return -1;
}

int HttpsServer::tunnel_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                                 std::size_t len) {
  HttpsServer* self = owner(wsi);
  if (self == nullptr || self->tunnel_ == nullptr) {
    return reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION ? 1 : 0;
  }
  auto* data = static_cast<TunnelSessionData*>(user);
  try {
    int rc = 0;
    if (self->keepalive_event(wsi, reason, data ? &data->keepalive : nullptr, rc)) return rc;
    rc = self->tunnel_->on_callback(wsi, reason, data ? &data->end : nullptr, in, len);
    if (rc == 0 && reason == LWS_CALLBACK_ESTABLISHED && data != nullptr && self->keepalive_) {
      self->keepalive_->add(data->keepalive, wsi);
    }
    return rc;
  } catch (const std::exception& e) {
    log::error(std::string("tunnel handler failed: ") + e.what());
  } catch (...) {
    log::error("tunnel handler failed");
  }
  return -1;
}

int HttpsServer::on_http(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                         std::size_t len) {
  switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
      // Tunnel ends are checked here, where a refusal can still be an HTTP 403.
      if (tunnel_ != nullptr) return tunnel_->confirm_upgrade(wsi);
      return 0;

    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
      load_client_cas(static_cast<SSL_CTX*>(user));
      return 0;

    case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
      // A wrong clock here makes every device's certificate "not yet valid" or "expired":
      // say so (`user` is OpenSSL's X509_STORE_CTX).
      if (len == 0 && user != nullptr) {
        auto* store = static_cast<X509_STORE_CTX*>(user);
        const std::string clock = pki::clock_skew_diagnosis(
            X509_STORE_CTX_get_error(store), X509_STORE_CTX_get_current_cert(store),
            std::time(nullptr), "a client's certificate", "this server");
        if (!clock.empty()) log::warning("TLS handshake refused: " + clock);
      }
      // lws turns our 0 into "verified": pass OpenSSL's own verdict (in `len`) through, so
      // that a client certificate not chaining to our CA fails the handshake.
      return len != 0 ? 0 : 1;

    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
      if (wake_handler_) wake_handler_();
      return 0;

    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
      // A WebSocket upgrade without our subprotocol lands on protocol 0: refuse it.
      return 1;

    case LWS_CALLBACK_HTTP: {
      // A new request on a connection whose previous one is still waiting (pipelining):
      // the old answer no longer has anywhere to go.
      forget_exchange(wsi);
      const ExchangeId id = next_exchange_id_++;
      HttpExchange& exchange = exchanges_[id];
      exchange_by_wsi_[wsi] = id;
      exchange.wsi = wsi;
      exchange.request.method = method_of(wsi);
      exchange.request.path = in ? std::string(static_cast<const char*>(in)) : "/";
      exchange.request.authorization = header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
      exchange.request.peer_address = peer_address(wsi);
      exchange.request.host = header(wsi, WSI_TOKEN_HOST, 256);
      for (int n = 0; n < 32; ++n) {
        char arg[512];
        if (lws_hdr_copy_fragment(wsi, arg, sizeof arg, WSI_TOKEN_HTTP_URI_ARGS, n) < 0) break;
        if (!exchange.request.query.empty()) exchange.request.query += '&';
        exchange.request.query += arg;
      }
      const std::string length_text = header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, 32);
      std::uint64_t length = 0;
      if (!length_text.empty()) {
        auto [ptr, ec] =
            std::from_chars(length_text.data(), length_text.data() + length_text.size(), length);
        if (ec != std::errc() || ptr != length_text.data() + length_text.size()) {
          exchange.close_after = true;
          respond(exchange, error_response(400, Errc::kSyntax, "malformed Content-Length header"));
          return 0;
        }
      }
      if (length > kMaxRequestBody) {
        // The body is not read: the connection cannot carry another request after this.
        exchange.close_after = true;
        respond(exchange, error_response(413, Errc::kTooLarge,
                                         "request bodies are limited to " +
                                             std::to_string(kMaxRequestBody) + " bytes"));
        return 0;
      }
      if (length == 0) {
        dispatch(id);
      } else {
        exchange.request.body.reserve(static_cast<std::size_t>(length));
      }
      return 0;
    }

    case LWS_CALLBACK_HTTP_BODY: {
      HttpExchange* exchange = exchange_of(wsi);
      if (exchange == nullptr || exchange->dispatched || exchange->responding) return 0;
      if (exchange->request.body.size() + len > kMaxRequestBody) {
        exchange->close_after = true;
        respond(*exchange, error_response(413, Errc::kTooLarge, "request body too large"));
        return 0;
      }
      exchange->request.body.append(static_cast<const char*>(in), len);
      return 0;
    }

    case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
      // lws also reports completion for a POST with "Content-Length: 0", already dispatched.
      HttpExchange* exchange = exchange_of(wsi);
      if (exchange == nullptr || exchange->dispatched || exchange->responding) return 0;
      dispatch(exchange_by_wsi_.at(wsi));
      return 0;
    }

    case LWS_CALLBACK_HTTP_WRITEABLE: return write_http(wsi);

    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL: forget_exchange(wsi); return 0;

    default: break;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

HttpsServer::HttpExchange* HttpsServer::exchange_of(lws* wsi) {
  auto it = exchange_by_wsi_.find(wsi);
  if (it == exchange_by_wsi_.end()) return nullptr;
  auto ex = exchanges_.find(it->second);
  return ex == exchanges_.end() ? nullptr : &ex->second;
}

void HttpsServer::forget_exchange(lws* wsi) {
  auto it = exchange_by_wsi_.find(wsi);
  if (it == exchange_by_wsi_.end()) return;
  exchanges_.erase(it->second);
  exchange_by_wsi_.erase(it);
}

void HttpsServer::dispatch(ExchangeId id) {
  auto it = exchanges_.find(id);
  if (it == exchanges_.end()) return;
  HttpExchange& exchange = it->second;
  exchange.dispatched = true;
  exchange.deadline = SteadyClock::now() + options_.max_response_wait;
  HttpRespond answer = [alive = std::weak_ptr<HttpsServer*>(alive_), id](HttpResponse response) {
    if (auto self = alive.lock()) (*self)->deliver(id, std::move(response));
  };
  // The request stays where it is while the handler runs: map nodes do not move.
  http_handler_(exchange.request, std::move(answer));
  auto again = exchanges_.find(id);
  if (again == exchanges_.end() || again->second.responding) return;
  // It waits (for a device). lws put a timeout on the request's arrival that would cut the
  // connection while it waits; our own deadline answers 504 instead.
  lws_set_timeout(again->second.wsi, NO_PENDING_TIMEOUT, 0);
  arm_exchange_timer();
}

void HttpsServer::deliver(ExchangeId id, HttpResponse response) {
  if (stopping_) return;
  auto it = exchanges_.find(id);
  if (it == exchanges_.end()) {
    log::debug("dropped the answer to a request whose connection is gone (" +
               std::to_string(response.status) + ")");
    return;
  }
  if (it->second.responding) return;  // answered already (504 after the wait)
  respond(it->second, std::move(response));
}

void HttpsServer::arm_exchange_timer() {
  if (!exchange_timer_ || exchange_timer_->pending()) return;
  std::optional<SteadyClock::time_point> next;
  for (const auto& [id, exchange] : exchanges_) {
    if (!exchange.dispatched || exchange.responding) continue;
    if (!next || exchange.deadline < *next) next = exchange.deadline;
  }
  if (!next) return;
  const auto delay = std::chrono::duration_cast<std::chrono::microseconds>(
      std::max(*next - SteadyClock::now(), SteadyClock::duration::zero()));
  // Rounded up so that the exchange is due when the timer fires.
  exchange_timer_->schedule(delay + std::chrono::milliseconds(1));
}

void HttpsServer::expire_exchanges() {
  // A timer callback: nothing may escape into lws.
  try {
    const auto now = SteadyClock::now();
    for (auto& [id, exchange] : exchanges_) {
      if (!exchange.dispatched || exchange.responding || exchange.deadline > now) continue;
      log::warning(exchange.request.method + " " + exchange.request.path.substr(0, 200) +
                   " got no answer in time; answering 504");
      respond(exchange, error_response(504, Errc::kTimeout, "the server got no answer in time"));
    }
    arm_exchange_timer();
  } catch (const std::exception& e) {
    log::error(std::string("expiring HTTP requests failed: ") + e.what());
  } catch (...) {
    log::error("expiring HTTP requests failed");
  }
}

void HttpsServer::respond(HttpExchange& exchange, HttpResponse response) {
  log::debug(exchange.request.method + " " + exchange.request.path.substr(0, 200) + " from " +
             exchange.request.peer_address + ": " + std::to_string(response.status));
  exchange.response = std::move(response);
  exchange.responding = true;
  if (exchange.request.method == "HEAD") exchange.response.body.clear();
  // A client that stops reading does not hold the connection forever.
  lws_set_timeout(exchange.wsi, PENDING_TIMEOUT_USER_OK, kHttpWriteTimeoutSeconds);
  lws_callback_on_writable(exchange.wsi);
}

int HttpsServer::write_http(lws* wsi) {
  HttpExchange* found = exchange_of(wsi);
  if (found == nullptr || !found->responding) return 0;
  HttpExchange& exchange = *found;
  const HttpResponse& response = exchange.response;

  if (!exchange.headers_sent) {
    std::vector<unsigned char> buf(LWS_PRE + 2048);
    unsigned char* start = buf.data() + LWS_PRE;
    unsigned char* p = start;
    unsigned char* end = buf.data() + buf.size() - 1;
    if (lws_add_http_common_headers(wsi, static_cast<unsigned int>(response.status),
                                    response.content_type.c_str(), response.body.size(), &p,
                                    end) != 0) {
      return -1;
    }
    auto add = [&](const std::string& name, const std::string& value) {
      const std::string field = name + ":";
      return lws_add_http_header_by_name(wsi, reinterpret_cast<const unsigned char*>(field.c_str()),
                                         reinterpret_cast<const unsigned char*>(value.data()),
                                         static_cast<int>(value.size()), &p, end) == 0;
    };
    if (!add("cache-control", "no-store")) return -1;
    if (exchange.close_after && !add("connection", "close")) return -1;
    for (const auto& [name, value] : response.headers) {
      if (!add(name, value)) return -1;
    }
    if (lws_finalize_write_http_header(wsi, start, &p, end) != 0) return -1;
    exchange.headers_sent = true;
    if (!response.body.empty()) {
      lws_callback_on_writable(wsi);
      return 0;
    }
  } else {
    const std::size_t left = response.body.size() - exchange.body_sent;
    const std::size_t n = std::min(left, kHttpChunk);
    std::vector<unsigned char> buf(LWS_PRE + n);
    std::memcpy(buf.data() + LWS_PRE, response.body.data() + exchange.body_sent, n);
    const bool last = n == left;
    if (lws_write(wsi, buf.data() + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) !=
        static_cast<int>(n)) {
      return -1;
    }
    exchange.body_sent += n;
    if (!last) {
      lws_callback_on_writable(wsi);
      return 0;
    }
  }
  const bool close_after = exchange.close_after;
  forget_exchange(wsi);
  if (close_after) return -1;
  return lws_http_transaction_completed(wsi) != 0 ? -1 : 0;
}

bool HttpsServer::keepalive_event(lws* wsi, lws_callback_reasons reason, WsKeepalive* ka, int& rc) {
  if (ka == nullptr || !keepalive_) return false;
  switch (reason) {
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_RECEIVE_PONG: KeepaliveWheel::heard(*ka); return false;
    case LWS_CALLBACK_SERVER_WRITEABLE:
      if (!ka->ping_due) return false;
      rc = KeepaliveWheel::write_due_ping(*ka, wsi) ? 0 : -1;
      return true;
    case LWS_CALLBACK_CLOSED: KeepaliveWheel::remove(*ka); return false;
    default: return false;
  }
}

int HttpsServer::on_up(lws* wsi, lws_callback_reasons reason, UpSessionData* session, void* in,
                       std::size_t len) {
  switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
      const ChannelKind kind = kind_of(wsi);
      ChannelSink* sink = sinks_[static_cast<int>(kind)];
      const std::string uri = header(wsi, WSI_TOKEN_GET_URI, 256);
      const std::string address = peer_address(wsi);
      if (uri != kChannelPaths[static_cast<int>(kind)] || sink == nullptr) {
        log::info("refused a WebSocket on " + uri.substr(0, 64) + " from " + address);
        if (channel_metrics_ != nullptr) {
          channel_metrics_->refused(channel_name(kind), "wrong_path");
        }
        return 1;
      }
      auto peer = sink->identify(lws_get_ssl(wsi));
      Status admitted = peer.ok() ? sink->admit(*peer, address) : Status(peer.error());
      if (!admitted.ok()) {
        log::notice(std::string("refused ") + (kind == ChannelKind::kLink ? "link" : "UP") +
                    " connection from " + address + ": " + admitted.error().message);
        if (channel_metrics_ != nullptr) {
          channel_metrics_->refused(channel_name(kind), channel_refusal_reason(admitted.error()));
        }
        return 1;
      }
      if (channel_metrics_ != nullptr) channel_metrics_->accepted(channel_name(kind), *peer);
      return 0;
    }

    case LWS_CALLBACK_ESTABLISHED: {
      const ChannelKind kind = kind_of(wsi);
      ChannelSink* sink = sinks_[static_cast<int>(kind)];
      if (sink == nullptr || session == nullptr) return -1;
      auto peer = sink->identify(lws_get_ssl(wsi));
      if (!peer.ok()) return -1;
      const ConnectionId id = next_connection_id_++;
      session->id = id;
      UpConnection conn;
      conn.wsi = wsi;
      conn.kind = kind;
      up_.emplace(id, std::move(conn));
      sink->on_connected(id, *peer, peer_address(wsi));
      return 0;
    }

    case LWS_CALLBACK_RECEIVE: {
      if (session == nullptr) return -1;
      auto it = up_.find(session->id);
      if (it == up_.end()) return -1;
      UpConnection& conn = it->second;
      if (lws_is_first_fragment(wsi)) {
        conn.rx.clear();
        conn.rx_discarding = false;
      }
      ChannelSink* sink = sinks_[static_cast<int>(conn.kind)];
      const bool link = conn.kind == ChannelKind::kLink;
      if (!conn.rx_discarding) {
        if (conn.rx.size() + len > (link ? kLinkRxLimit : kUpRxLimit)) {
          // The rest of the message is dropped piece by piece as it arrives: however large
          // it is, no more than the limit is ever held. A gateway's link is closed (its
          // messages are the server's own wrapping, a too large one is a bug); a UP peer
          // gets an error result at the message's end and keeps its channel.
          std::string().swap(conn.rx);
          conn.rx_discarding = true;
          if (link) close(session->id, 1009, "message too big");
        } else {
          conn.rx.append(static_cast<const char*>(in), len);
        }
      }
      if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
        if (conn.rx_discarding && !link) {
          // Its id was never read: "0", as for any message whose id cannot be read.
          send(session->id,
               protocol::serialize_envelope(protocol::make_error_result(
                   "0", make_error(Errc::kTooLarge, "message exceeds the limit of " +
                                                        std::to_string(kUpRxLimit) + " bytes"))));
        } else if (!conn.rx_discarding && sink != nullptr) {
          std::string message = std::move(conn.rx);
          conn.rx.clear();
          sink->on_message(session->id, message);
        }
        // on_message may have closed or replaced connections; `conn` may be gone.
        if (auto again = up_.find(session->id); again != up_.end()) again->second.rx.clear();
      }
      return 0;
    }

    case LWS_CALLBACK_SERVER_WRITEABLE: return write_up(wsi, session);

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
      std::uint16_t code = 0;
      if (len >= 2 && in != nullptr) {
        const auto* b = static_cast<const unsigned char*>(in);
        code = static_cast<std::uint16_t>((b[0] << 8) | b[1]);
      }
      log::debug("UP peer " + peer_address(wsi) + " closed with " + std::to_string(code));
      return 0;
    }

    case LWS_CALLBACK_CLOSED: {
      if (session == nullptr || session->id == 0) return 0;
      const ConnectionId id = session->id;
      session->id = 0;
      ChannelSink* sink = nullptr;
      if (auto it = up_.find(id); it != up_.end()) sink = sinks_[static_cast<int>(it->second.kind)];
      up_.erase(id);
      if (sink != nullptr) sink->on_closed(id);
      return 0;
    }

    default: break;
  }
  return 0;
}

int HttpsServer::write_up(lws* wsi, UpSessionData* session) {
  if (session == nullptr) return 0;
  auto it = up_.find(session->id);
  if (it == up_.end()) return 0;
  UpConnection& conn = it->second;
  // A graceful close (the server stopping) first writes what is queued, such as the
  // shadow_stop messages of the sessions it ends; other closes drop the queue.
  if (conn.closing && conn.queue.empty()) {
    const std::string& reason = conn.closing->second;
    lws_close_reason(wsi, static_cast<lws_close_status>(conn.closing->first),
                     reinterpret_cast<unsigned char*>(const_cast<char*>(reason.data())),
                     std::min<std::size_t>(reason.size(), 120));
    return -1;
  }
  if (conn.queue.empty()) return 0;
  std::string message = std::move(conn.queue.front());
  conn.queue.pop_front();
  conn.queued_bytes -= message.size();
  std::vector<unsigned char> buf(LWS_PRE + message.size());
  std::memcpy(buf.data() + LWS_PRE, message.data(), message.size());
  if (lws_write(wsi, buf.data() + LWS_PRE, message.size(), LWS_WRITE_TEXT) <
      static_cast<int>(message.size())) {
    return -1;
  }
  if (!conn.queue.empty() || conn.closing) lws_callback_on_writable(wsi);
  return 0;
}

void HttpsServer::send(ConnectionId connection, std::string text) {
  auto it = up_.find(connection);
  if (it == up_.end() || it->second.closing) return;
  UpConnection& conn = it->second;
  const bool link = conn.kind == ChannelKind::kLink;
  if (conn.queue.size() >=
          (link ? options_.link_max_queued_messages : options_.max_queued_messages) ||
      conn.queued_bytes + text.size() >
          (link ? options_.link_max_queued_bytes : options_.max_queued_bytes)) {
    log::warning("UP connection " + std::to_string(connection) +
                 " is not reading; closing it (send queue full)");
    close(connection, 1008, "send queue full");
    return;
  }
  conn.queued_bytes += text.size();
  conn.queue.push_back(std::move(text));
  lws_callback_on_writable(conn.wsi);
}

void HttpsServer::close(ConnectionId connection, int code, const std::string& reason) {
  auto it = up_.find(connection);
  if (it == up_.end() || it->second.closing) return;
  UpConnection& conn = it->second;
  conn.closing = std::make_pair(code, reason);
  if (code != kCloseRestarting) {
    conn.queue.clear();
    conn.queued_bytes = 0;
  }
  lws_callback_on_writable(conn.wsi);
  // A peer that never lets us write is cut off without the close frame.
  conn.close_deadline = SteadyClock::now() + kUpCloseTimeout;
  if (close_timer_ && !close_timer_->pending()) close_timer_->schedule(std::chrono::seconds(1));
}

void HttpsServer::cut_off_unclosed() {
  const auto now = SteadyClock::now();
  bool waiting = false;
  for (auto& [id, conn] : up_) {
    if (!conn.closing || conn.cut_off) continue;
    if (conn.close_deadline > now) {
      waiting = true;
      continue;
    }
    conn.cut_off = true;
    // Due now: lws puts it at the head of its timer list, no walk over the others.
    lws_set_timeout(conn.wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
  }
  if (waiting) close_timer_->schedule(std::chrono::seconds(1));
}

}  // namespace tether::server
