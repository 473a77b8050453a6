// The libwebsockets glue of tether-server: one context, one TLS vhost on server.listen,
// serving HTTP requests (handed to an HttpHandler as plain values) and UP WebSockets at /up
// (handed to the DeviceHub). It owns the event loop; it never owns a wsi: pointers to them
// live only between their open and close callbacks.
//
// A handler may answer later (a device command waits for the device). Each request is an
// exchange with an id of its own, so that an answer for a connection that closed meanwhile
// (whose wsi lws may already have reused) finds nothing and is dropped; an exchange that
// waits longer than `max_response_wait` is answered 504.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/Config.h"
#include "common/LwsLoop.h"
#include "common/Result.h"
#include "platform/OpenSsl.h"
#include "server/DeviceHub.h"
#include "server/HttpMessage.h"
#include "server/KeepaliveWheel.h"

namespace tether::server {

class TunnelRelay;
class ChannelMetrics;

// The WebSocket channels the listener carries besides tunnels (see ChannelSink).
enum class ChannelKind { kUp = 0, kLink = 1 };

struct HttpsServerOptions {
  Endpoint listen;
  std::string certificate_path;  // leaf first, then the CA
  std::string key_path;
  std::vector<std::string> client_ca_pems;  // anchors for device certificates
  std::chrono::seconds ping_interval{30};
  std::size_t max_queued_messages = 256;
  std::size_t max_queued_bytes = 8 * 1024 * 1024;
  // The server's link to a gateway carries every device's traffic: larger bounds.
  std::size_t link_max_queued_messages = 64 * 1024;
  std::size_t link_max_queued_bytes = 64 * 1024 * 1024;
  // How long a request may wait for its handler's answer before it is answered 504. The
  // server sets it a little above the hub's request timeout, so that the hub's own, more
  // precise answer (the device did not answer) normally comes first.
  std::chrono::milliseconds max_response_wait{std::chrono::seconds(35)};
};

class HttpsServer final : public UpTransport {
 public:
  explicit HttpsServer(HttpsServerOptions options);
  ~HttpsServer() override;
  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;

  void set_http_handler(HttpHandler handler) { http_handler_ = std::move(handler); }
  // The server's devices: /up channels go to the hub.
  void set_hub(DeviceHub* hub);
  // Who takes channels of `kind` (a gateway's router); none: such upgrades are refused.
  void set_channel_sink(ChannelKind kind, ChannelSink* sink) {
    sinks_[static_cast<int>(kind)] = sink;
  }
  // The shadowing relay: WebSockets at /tunnel/... (subprotocols tether.tunnel.v1, binary).
  void set_tunnel_relay(TunnelRelay* relay) { tunnel_ = relay; }
  // Counts channel upgrades (accepted, refused, reconnects); none: not counted.
  void set_channel_metrics(ChannelMetrics* metrics) { channel_metrics_ = metrics; }
  // Open channels of one kind (walks them: for scrapes, not hot paths).
  [[nodiscard]] std::size_t channel_count(ChannelKind kind) const noexcept;
  // Called on the loop after lws_cancel_service() (from a signal handler, for instance).
  void set_wake_handler(std::function<void()> handler) { wake_handler_ = std::move(handler); }

  // Creates the context; when it returns successfully the listening socket is bound.
  [[nodiscard]] Status start();
  [[nodiscard]] lws_context* context() const noexcept { return context_.get(); }
  // Destroys the context, closing every connection (their close callbacks run first).
  void stop();

  void send(ConnectionId connection, std::string text) override;
  void close(ConnectionId connection, int code, const std::string& reason) override;
  // Open channels of every kind.
  [[nodiscard]] std::size_t up_connection_count() const noexcept { return up_.size(); }
  // Requests handed to the handler and not answered yet.
  [[nodiscard]] std::size_t waiting_exchange_count() const noexcept;
  // Requests handed to the handler whose answer is not written out yet (waiting included).
  [[nodiscard]] std::size_t open_exchange_count() const noexcept;

 private:
  using ExchangeId = std::uint64_t;
  using SteadyClock = std::chrono::steady_clock;
  struct HttpExchange {
    lws* wsi = nullptr;
    HttpRequest request;
    bool dispatched = false;  // handed to the handler
    bool responding = false;  // the response is set and being written
    bool close_after = false;
    SteadyClock::time_point deadline{};
    HttpResponse response;
    bool headers_sent = false;
    std::size_t body_sent = 0;
  };
  struct UpConnection {
    lws* wsi = nullptr;
    ChannelKind kind = ChannelKind::kUp;
    // A list, not a deque: an empty std::deque already holds ~600 bytes, and nearly every
    // channel's queue is empty nearly all the time (bench/fleet).
    std::list<std::string> queue;
    std::size_t queued_bytes = 0;
    std::optional<std::pair<int, std::string>> closing;
    SteadyClock::time_point close_deadline{};  // cut off if still open then
    bool cut_off = false;
    std::string rx;
    bool rx_discarding = false;
  };
  struct UpSessionData {
    ConnectionId id;
    WsKeepalive keepalive;
  };
  // The keepalive's part of a WebSocket event; true when it handled the event itself (a
  // ping written), with the callback's result in `rc`.
  bool keepalive_event(lws* wsi, lws_callback_reasons reason, WsKeepalive* ka, int& rc);
  class HubSink;

  static int http_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                           std::size_t len);
  static int up_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                         std::size_t len);
  static int tunnel_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                             std::size_t len);
  int on_http(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len);
  int on_up(lws* wsi, lws_callback_reasons reason, UpSessionData* session, void* in,
            std::size_t len);
  static ChannelKind kind_of(lws* wsi);
  HttpExchange* exchange_of(lws* wsi);
  void dispatch(ExchangeId id);
  // The handler's answer (or ours) for exchange `id`; dropped when the exchange is gone or
  // already answered.
  void deliver(ExchangeId id, HttpResponse response);
  void respond(HttpExchange& exchange, HttpResponse response);
  void forget_exchange(lws* wsi);
  void arm_exchange_timer();
  void expire_exchanges();
  int write_http(lws* wsi);
  int write_up(lws* wsi, UpSessionData* session);
  void load_client_cas(SSL_CTX* ctx);

  HttpsServerOptions options_;
  HttpHandler http_handler_;
  std::unique_ptr<HubSink> hub_sink_;
  ChannelSink* sinks_[2] = {nullptr, nullptr};
  std::function<void()> wake_handler_;
  TunnelRelay* tunnel_ = nullptr;
  ChannelMetrics* channel_metrics_ = nullptr;
  lws_protocols protocols_[6]{};
  lws_retry_bo_t retry_{};
  std::vector<ssl::X509Ptr> client_cas_;
  std::unordered_map<ExchangeId, HttpExchange> exchanges_;
  std::unordered_map<lws*, ExchangeId> exchange_by_wsi_;  // the exchange open on a connection
  ExchangeId next_exchange_id_ = 1;
  std::unordered_map<ConnectionId, UpConnection> up_;
  ConnectionId next_connection_id_ = 1;
  bool stopping_ = false;
  // Answers handed out to handlers hold this weakly: one that comes after this object is
  // gone does nothing.
  std::shared_ptr<HttpsServer*> alive_ = std::make_shared<HttpsServer*>(this);
  // Before the context: its close callbacks take connections out of the wheel's lists.
  std::unique_ptr<KeepaliveWheel> keepalive_;
  LwsContextPtr context_;
  // Declared after the context: destroyed (cancelled) before it.
  std::unique_ptr<LwsTimer> exchange_timer_;
  // Cuts off closing channels whose peer did not let the close through in time. One timer
  // for all: an lws timeout per channel is a sorted insert that walks every pending one,
  // O(n²) when a stopping server closes all its channels at once. (lws's own close
  // handshake still inserts one per channel: docs/benchmarks.md, fleet, Restart.)
  std::unique_ptr<LwsTimer> close_timer_;
  void cut_off_unclosed();
};

}  // namespace tether::server
