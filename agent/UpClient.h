// Keeps the agent's one UP channel to its server (or gateway) nailed up: connects, hands the
// open channel to a session handler, and when it ends decides when to try again
// (ReconnectBackoff: full jitter; a jittered delay after the server says 1012/1001; a quick
// retry after a network change). Publishes its state for `tether-agent status` and systemd.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "agent/ReconnectBackoff.h"
#include "agent/UpConnection.h"
#include "common/LwsLoop.h"
#include "protocol/EnrollmentToken.h"

namespace tether::agent {

enum class ChannelState { kStopped, kConnecting, kConnected, kWaiting };
[[nodiscard]] const char* channel_state_name(ChannelState s) noexcept;

struct ChannelStatus {
  ChannelState state = ChannelState::kStopped;
  std::string endpoint;           // wss://host:port being used or tried
  std::int64_t since = 0;         // unix seconds: when this state began
  std::string last_error;         // why the last attempt or channel ended
  std::int64_t next_attempt = 0;  // unix seconds, when waiting
  unsigned failures = 0;          // consecutive failed attempts
};

// What runs over an open channel (hello, status, requests): the agent's AgentSession.
class ChannelHandler {
 public:
  virtual ~ChannelHandler() = default;
  virtual void on_channel_open() = 0;
  virtual void on_channel_message(std::string_view text) = 0;
  virtual void on_channel_closed() = 0;
};

struct UpClientOptions {
  std::chrono::milliseconds backoff_base{1000};
  std::chrono::milliseconds backoff_cap{5 * 60 * 1000};
  std::chrono::milliseconds restart_spread{30 * 1000};
  std::chrono::milliseconds connect_timeout{20 * 1000};
  std::uint16_t ping_interval_s = 30;
  std::uint64_t seed = 0;  // for the jitter; 0: from the system's random source
};

class UpClient final : private UpConnectionListener {
 public:
  UpClient(lws_context* context, lws_vhost* vhost, UpClientOptions options);
  ~UpClient() override;

  // The session that runs over each open channel; set before start().
  void set_handler(ChannelHandler& handler) noexcept { handler_ = &handler; }
  // Starts (or restarts) keeping a channel to `endpoint`, first attempt after `delay`.
  void start(const protocol::ServerUrl& endpoint,
             std::chrono::milliseconds delay = std::chrono::milliseconds(0));
  // Closes the channel with `code` and stops reconnecting.
  void stop(int code, std::string reason);
  // The session's handshake completed (hello answered): the channel counts as working.
  void mark_ready();
  // The session found the channel unusable (e.g. hello refused): close it and back off.
  void fail(std::string reason);
  // Link, address or route changed: retry soon instead of waiting out a long backoff.
  void network_changed();

  [[nodiscard]] Status send(std::string text) { return connection_.send(std::move(text)); }
  [[nodiscard]] const ChannelStatus& status() const noexcept { return status_; }
  [[nodiscard]] bool ready() const noexcept { return status_.state == ChannelState::kConnected; }

  std::function<void(const ChannelStatus&)> on_status;
  // Called before each connection attempt (a chance to refresh TLS material).
  std::function<void()> before_connect;
  // Attempts made, for the reconnect-storm measurements (unix ms of each attempt).
  std::function<void(std::int64_t)> on_attempt;

 private:
  void on_established() override;
  void on_text(std::string_view message) override;
  void on_closed(const ChannelEnd& end) override;

  void attempt();
  void schedule(std::chrono::milliseconds delay, std::string why);
  void set_state(ChannelState s);

  UpClientOptions options_;
  ChannelHandler* handler_ = nullptr;
  UpConnection connection_;
  ReconnectBackoff backoff_;
  LwsTimer retry_timer_;
  LwsTimer handshake_timer_;
  protocol::ServerUrl endpoint_;
  ChannelStatus status_;
  bool running_ = false;
  bool session_open_ = false;
  std::string fail_reason_;
};

}  // namespace tether::agent
