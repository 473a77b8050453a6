// The libwebsockets glue of tether-server: one context, one TLS vhost on server.listen,
// serving HTTP requests (handed to an HttpHandler as plain values) and UP WebSockets at /up
// (handed to the DeviceHub). It owns the event loop; it never owns a wsi: pointers to them
// live only between their open and close callbacks.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
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

namespace tether::server {

struct HttpsServerOptions {
  Endpoint listen;
  std::string certificate_path;  // leaf first, then the CA
  std::string key_path;
  std::vector<std::string> client_ca_pems;  // anchors for device certificates
  std::chrono::seconds ping_interval{30};
  std::size_t max_queued_messages = 256;
  std::size_t max_queued_bytes = 8 * 1024 * 1024;
};

class HttpsServer final : public UpTransport {
 public:
  using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

  explicit HttpsServer(HttpsServerOptions options);
  ~HttpsServer() override;
  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;

  void set_http_handler(HttpHandler handler) { http_handler_ = std::move(handler); }
  void set_hub(DeviceHub* hub) { hub_ = hub; }
  // Called on the loop after lws_cancel_service() (from a signal handler, for instance).
  void set_wake_handler(std::function<void()> handler) { wake_handler_ = std::move(handler); }

  // Creates the context; when it returns successfully the listening socket is bound.
  [[nodiscard]] Status start();
  [[nodiscard]] lws_context* context() const noexcept { return context_.get(); }
  // Destroys the context, closing every connection (their close callbacks run first).
  void stop();

  void send(ConnectionId connection, std::string text) override;
  void close(ConnectionId connection, int code, const std::string& reason) override;
  [[nodiscard]] std::size_t up_connection_count() const noexcept { return up_.size(); }

 private:
  struct HttpExchange {
    HttpRequest request;
    bool responding = false;
    bool close_after = false;
    HttpResponse response;
    bool headers_sent = false;
    std::size_t body_sent = 0;
  };
  struct UpConnection {
    lws* wsi = nullptr;
    std::deque<std::string> queue;
    std::size_t queued_bytes = 0;
    std::optional<std::pair<int, std::string>> closing;
    std::string rx;
    bool rx_discarding = false;
  };
  struct UpSessionData {
    ConnectionId id;
  };

  static int http_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                           std::size_t len);
  static int up_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                         std::size_t len);
  int on_http(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len);
  int on_up(lws* wsi, lws_callback_reasons reason, UpSessionData* session, void* in,
            std::size_t len);
  void respond(lws* wsi, HttpExchange& exchange, HttpResponse response);
  int write_http(lws* wsi);
  int write_up(lws* wsi, UpSessionData* session);
  void load_client_cas(SSL_CTX* ctx);

  HttpsServerOptions options_;
  HttpHandler http_handler_;
  DeviceHub* hub_ = nullptr;
  std::function<void()> wake_handler_;
  lws_protocols protocols_[3]{};
  lws_retry_bo_t retry_{};
  std::vector<ssl::X509Ptr> client_cas_;
  std::unordered_map<lws*, HttpExchange> http_;
  std::unordered_map<ConnectionId, UpConnection> up_;
  ConnectionId next_connection_id_ = 1;
  LwsContextPtr context_;
};

// The device id (SPKI SHA-256) of the client certificate on a TLS connection.
[[nodiscard]] Result<std::string> peer_device_id(SSL* ssl);

}  // namespace tether::server
