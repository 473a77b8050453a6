// Keeps the agent's one UP channel to its server (or gateway) nailed up: connects, hands the
// open channel to a session handler, and when it ends decides where and when to try again
// (EndpointList: the next endpoint soon, the backoff once per round; ReconnectBackoff: full
// jitter; a jittered delay after the server says 1012/1001; a quick retry after a network
// change). On a fallback endpoint it probes the preferred one every primary_retry and goes
// back when it answers. Publishes its state for `tether-agent status` and systemd.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agent/EndpointList.h"
#include "agent/EndpointProbe.h"
#include "agent/ReconnectBackoff.h"
#include "agent/UpConnection.h"
#include "common/LwsLoop.h"
#include "protocol/EnrollmentToken.h"

namespace tether::agent {

enum class ChannelState { kStopped, kConnecting, kConnected, kWaiting };
[[nodiscard]] const char* channel_state_name(ChannelState s) noexcept;

struct ChannelStatus {
  ChannelState state = ChannelState::kStopped;
  std::string endpoint;                // wss://host:port being used or tried
  std::int64_t since = 0;              // unix seconds: when this state began
  std::string last_error;              // why the last attempt or channel ended
  std::int64_t next_attempt = 0;       // unix seconds, when waiting
  unsigned failures = 0;               // consecutive failed attempts
  std::size_t endpoint_index = 0;      // of `endpoint` in `endpoints` (0: the preferred one)
  std::vector<std::string> endpoints;  // every endpoint, in order of preference
  bool via_gateway = false;            // the open channel's peer said gateway_status
  bool server_reachable = false;       // the server answers over the channel (now)
};

// What runs over an open channel (hello, status, requests): the agent's AgentSession.
class ChannelHandler {
 public:
  virtual ~ChannelHandler() = default;
  virtual void on_channel_open() = 0;
  virtual void on_channel_message(std::string_view text) = 0;
  // A message over the size limit arrived and was dropped unread.
  virtual void on_channel_oversized() = 0;
  virtual void on_channel_closed() = 0;
};

struct UpClientOptions {
  std::chrono::milliseconds backoff_base{1000};
  std::chrono::milliseconds backoff_cap{5 * 60 * 1000};
  std::chrono::milliseconds restart_spread{30 * 1000};
  std::chrono::milliseconds connect_timeout{20 * 1000};
  std::uint16_t ping_interval_s = 30;
  std::uint64_t seed = 0;  // for the jitter; 0: from the system's random source
  // On a fallback endpoint, probe the preferred one this often (TCP connect, probe_timeout).
  std::chrono::milliseconds primary_retry{60 * 1000};
  std::chrono::milliseconds probe_timeout{5 * 1000};
};

class UpClient final : private UpConnectionListener {
 public:
  UpClient(lws_context* context, lws_vhost* vhost, UpClientOptions options);
  ~UpClient() override;

  // The session that runs over each open channel; set before start().
  void set_handler(ChannelHandler& handler) noexcept { handler_ = &handler; }
  // Starts (or restarts) keeping a channel to the first of `endpoints` that works, first
  // attempt (at endpoint 0) after `delay`.
  void start(EndpointList endpoints,
             std::chrono::milliseconds delay = std::chrono::milliseconds(0));
  void start(const protocol::ServerUrl& endpoint,
             std::chrono::milliseconds delay = std::chrono::milliseconds(0)) {
    start(EndpointList({endpoint}), delay);
  }
  // Closes the channel with `code` and stops reconnecting.
  void stop(int code, std::string reason);
  // The session's handshake completed (hello answered): the channel counts as working.
  void mark_ready();
  // The session found the channel unusable (e.g. hello refused): close it and back off.
  void fail(std::string reason);
  // Link, address or route changed: retry soon (from endpoint 0) instead of waiting out a
  // long backoff; on a fallback endpoint, probe the preferred one now.
  void network_changed();
  // A gateway in front of the open channel reported its link to the server. Unavailable: the
  // channel counts as connected (no hello timeout) but not ready; connected after that: the
  // session sends hello again, which must be answered within connect_timeout.
  void gateway_status(bool server_connected);

  [[nodiscard]] Status send(std::string text) { return connection_.send(std::move(text)); }
  [[nodiscard]] const ChannelStatus& status() const noexcept { return status_; }
  // Hello answered and the server reachable: what the session sends now reaches the server.
  [[nodiscard]] bool ready() const noexcept {
    return status_.state == ChannelState::kConnected && status_.server_reachable;
  }

  std::function<void(const ChannelStatus&)> on_status;
  // Called before each connection attempt (a chance to refresh TLS material).
  std::function<void()> before_connect;
  // Attempts made, for the reconnect-storm measurements (unix ms of each attempt).
  std::function<void(std::int64_t)> on_attempt;
  // Given why an attempt failed before the channel opened, a clearer account ("" keeps it):
  // e.g. a TLS failure caused by a wrong clock.
  std::function<std::string(const std::string&)> explain_failure;

 private:
  void on_established() override;
  void on_text(std::string_view message) override;
  void on_oversized() override;
  void on_closed(const ChannelEnd& end) override;

  void attempt();
  void schedule(std::chrono::milliseconds delay, std::string why);
  void set_state(ChannelState s);
  void probe_primary();

  UpClientOptions options_;
  ChannelHandler* handler_ = nullptr;
  UpConnection connection_;
  ReconnectBackoff backoff_;
  LwsTimer retry_timer_;
  LwsTimer handshake_timer_;
  LwsTimer probe_timer_;
  EndpointProbe probe_;
  EndpointList endpoints_{std::vector<protocol::ServerUrl>{}};
  ChannelStatus status_;
  bool running_ = false;
  bool session_open_ = false;
  bool gateway_server_up_ = false;  // the gateway's last word on its link to the server
  bool switching_ = false;          // closing to start over with a new endpoint list
  std::chrono::milliseconds switch_delay_{0};
  bool returning_ = false;  // closing to go back to the preferred endpoint
  std::string fail_reason_;
};

}  // namespace tether::agent
