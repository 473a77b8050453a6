// One client WebSocket to a server or gateway, on the process's lws loop: connect, queue
// text messages out (one lws_write per writeable callback), reassemble messages in (bounded),
// and report how it ended. Reconnecting is the owner's business (UpClient).
#pragma once

#include <libwebsockets.h>

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "common/Result.h"
#include "protocol/EnrollmentToken.h"

namespace tether::agent {

struct ChannelEnd {
  bool established = false;  // the upgrade had succeeded
  int close_code = 0;        // from the peer's close frame, 0 if none
  std::string close_reason;
  std::string error;  // why it failed or dropped, in words
};

class UpConnectionListener {
 public:
  virtual ~UpConnectionListener() = default;
  virtual void on_established() = 0;
  virtual void on_text(std::string_view message) = 0;
  // A text message over max_message_bytes was read to its end and dropped (never held whole).
  virtual void on_oversized() = 0;
  // Called exactly once per connect() that returned ok, after which the connection is idle.
  virtual void on_closed(const ChannelEnd& end) = 0;
};

struct UpConnectionOptions {
  std::string path = "/up";
  std::string subprotocol;
  std::uint16_t ping_interval_s = 30;  // lws pings when idle this long, hangs up after twice
  std::size_t max_message_bytes = 256 * 1024 + 1024;
  std::size_t max_queued_bytes = 4 * 1024 * 1024;
};

class UpConnection {
 public:
  UpConnection(lws_context* context, lws_vhost* vhost, UpConnectionListener& listener,
               UpConnectionOptions options);
  ~UpConnection();
  UpConnection(const UpConnection&) = delete;
  UpConnection& operator=(const UpConnection&) = delete;

  // Starts connecting; the outcome arrives through the listener.
  [[nodiscard]] Status connect(const protocol::ServerUrl& url);
  // Queues a text message; kTooLarge when the queue is full (the peer stopped reading).
  [[nodiscard]] Status send(std::string text);
  // Closes with a code and reason (asynchronously; on_closed follows).
  void close(int code, std::string reason);
  // Drops the connection without a close handshake (dead peer, shutdown).
  void abort();

  [[nodiscard]] bool active() const noexcept { return wsi_ != nullptr; }
  [[nodiscard]] bool established() const noexcept { return established_; }

  // The lws protocol entry for client connections of this kind; name it in the vhost's
  // protocol table with per_session_data_size 0.
  static int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len);

 private:
  int handle(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len);
  void finish(lws* wsi, std::string error);

  lws_context* context_;
  lws_vhost* vhost_;
  UpConnectionListener& listener_;
  UpConnectionOptions options_;
  lws_retry_bo_t idle_policy_{};
  std::string host_;
  std::string host_header_;
  lws* wsi_ = nullptr;
  bool established_ = false;
  bool reported_ = true;  // nothing to report until connect() succeeds
  std::deque<std::string> queue_;
  std::size_t queued_bytes_ = 0;
  std::string rx_;
  bool rx_overflow_ = false;
  int pending_close_code_ = 0;
  std::string pending_close_reason_;
  ChannelEnd end_;
};

}  // namespace tether::agent
