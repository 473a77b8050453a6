#include "agent/UpClient.h"

#include <random>
#include <utility>

#include "protocol/UpMessage.h"

namespace tether::agent {
namespace {

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::uint64_t seed_or_random(std::uint64_t seed) {
  if (seed != 0) return seed;
  std::random_device rd;
  return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

UpConnectionOptions connection_options(const UpClientOptions& o) {
  UpConnectionOptions c;
  c.path = "/up";
  c.subprotocol = protocol::kUpSubprotocol;
  c.ping_interval_s = o.ping_interval_s;
  return c;
}

}  // namespace

const char* channel_state_name(ChannelState s) noexcept {
  switch (s) {
    case ChannelState::kStopped: return "stopped";
    case ChannelState::kConnecting: return "connecting";
    case ChannelState::kConnected: return "connected";
    case ChannelState::kWaiting: return "waiting";
  }
  return "unknown";
}

UpClient::UpClient(lws_context* context, lws_vhost* vhost, UpClientOptions options)
    : options_(options),
      connection_(context, vhost, *this, connection_options(options)),
      backoff_(options.backoff_base, options.backoff_cap, options.restart_spread,
               seed_or_random(options.seed)),
      retry_timer_(context, [this] { attempt(); }),
      handshake_timer_(context,
                       [this] {
                         fail("no answer to hello within " +
                              std::to_string(options_.connect_timeout.count() / 1000) + " s");
                       }),
      probe_timer_(context, [this] { probe_primary(); }),
      probe_(context, vhost) {}

UpClient::~UpClient() {
  running_ = false;
  on_status = nullptr;  // abort() may report the end at once: nobody to tell now
  connection_.abort();
}

void UpClient::set_state(ChannelState s) {
  if (status_.state != s) status_.since = unix_now();
  status_.state = s;
  status_.failures = backoff_.failures();
  status_.endpoint = endpoints_.current().to_string();
  status_.endpoint_index = endpoints_.index();
  status_.server_reachable = session_open_ && s == ChannelState::kConnected &&
                             (!status_.via_gateway || gateway_server_up_);
  if (on_status) on_status(status_);
}

void UpClient::start(EndpointList endpoints, std::chrono::milliseconds delay) {
  endpoints_ = std::move(endpoints);
  status_.endpoints = endpoints_.urls();
  running_ = true;
  returning_ = false;
  if (connection_.active()) {
    switching_ = true;
    switch_delay_ = delay;
    connection_.close(1001, "switching endpoint");
    return;  // on_closed schedules the next attempt
  }
  schedule(delay, "");
}

void UpClient::stop(int code, std::string reason) {
  running_ = false;
  retry_timer_.cancel();
  handshake_timer_.cancel();
  probe_timer_.cancel();
  probe_.cancel();
  if (connection_.active()) connection_.close(code, std::move(reason));
  set_state(ChannelState::kStopped);
}

void UpClient::schedule(std::chrono::milliseconds delay, std::string why) {
  if (!running_) return;
  if (!why.empty()) status_.last_error = std::move(why);
  status_.next_attempt = unix_now() + (delay.count() + 999) / 1000;
  retry_timer_.schedule(std::chrono::duration_cast<std::chrono::microseconds>(delay) +
                        std::chrono::microseconds(1));
  set_state(ChannelState::kWaiting);
}

void UpClient::attempt() {
  if (!running_ || connection_.active()) return;
  if (before_connect) before_connect();
  if (on_attempt) on_attempt(unix_now_ms());
  status_.next_attempt = 0;
  set_state(ChannelState::kConnecting);
  fail_reason_.clear();
  // The whole handshake (TCP, TLS, upgrade, hello) must finish within connect_timeout.
  handshake_timer_.schedule(
      std::chrono::duration_cast<std::chrono::microseconds>(options_.connect_timeout));
  const std::string where = endpoints_.size() > 1 ? endpoints_.current().to_string() + ": " : "";
  auto started = connection_.connect(endpoints_.current());
  if (!started.ok()) {
    handshake_timer_.cancel();
    schedule(endpoints_.failed(backoff_), where + started.error().message);
  }
}

void UpClient::mark_ready() {
  handshake_timer_.cancel();
  backoff_.reset();
  status_.last_error.clear();
  set_state(ChannelState::kConnected);
}

void UpClient::fail(std::string reason) {
  fail_reason_ = std::move(reason);
  handshake_timer_.cancel();
  if (connection_.active()) {
    connection_.close(LWS_CLOSE_STATUS_POLICY_VIOLATION, fail_reason_);
  } else if (running_ && status_.state == ChannelState::kConnecting) {
    // No connection left to close, so no on_closed will come: never stay "connecting".
    schedule(endpoints_.failed(backoff_), fail_reason_);
  }
}

void UpClient::network_changed() {
  if (!running_) return;
  if (status_.state == ChannelState::kWaiting) {
    endpoints_.to_primary();
    schedule(backoff_.after_network_change(), status_.last_error);
  } else if (session_open_ && endpoints_.on_fallback() && !probe_.running() && !returning_) {
    probe_timer_.schedule(std::chrono::microseconds(1));  // maybe the preferred one is back
  }
}

void UpClient::gateway_status(bool server_connected) {
  if (!session_open_) return;
  status_.via_gateway = true;
  if (!server_connected) {
    // The gateway works but drops what we send: no hello can be answered now, and there
    // is no point in trying elsewhere because of that.
    gateway_server_up_ = false;
    handshake_timer_.cancel();
    backoff_.reset();
    set_state(ChannelState::kConnected);
    return;
  }
  const bool was_unavailable = !gateway_server_up_ && status_.state == ChannelState::kConnected;
  gateway_server_up_ = true;
  if (was_unavailable) {
    // The session sends hello again: the same bound as for a new channel.
    handshake_timer_.schedule(
        std::chrono::duration_cast<std::chrono::microseconds>(options_.connect_timeout));
    set_state(ChannelState::kConnecting);
  } else {
    set_state(status_.state);
  }
}

void UpClient::probe_primary() {
  if (!session_open_ || !endpoints_.on_fallback() || returning_) return;
  const protocol::ServerUrl primary = endpoints_.primary();
  probe_.start(
      primary, options_.probe_timeout, [this, primary](bool reachable, const std::string&) {
        if (!session_open_ || !endpoints_.on_fallback()) return;
        if (!reachable) {
          probe_timer_.schedule(
              std::chrono::duration_cast<std::chrono::microseconds>(options_.primary_retry));
          return;
        }
        // The preferred endpoint takes connections again: go back to it now (if that attempt
        // fails after all, the round goes on from there as after any failure).
        returning_ = true;
        connection_.close(1001, "returning to preferred endpoint");
      });
}

void UpClient::on_established() {
  session_open_ = true;
  status_.via_gateway = false;
  gateway_server_up_ = false;
  if (endpoints_.on_fallback()) {
    probe_timer_.schedule(
        std::chrono::duration_cast<std::chrono::microseconds>(options_.primary_retry));
  }
  handler_->on_channel_open();
}

void UpClient::on_text(std::string_view message) {
  handler_->on_channel_message(message);
}

void UpClient::on_oversized() {
  handler_->on_channel_oversized();
}

void UpClient::on_closed(const ChannelEnd& end) {
  handshake_timer_.cancel();
  probe_timer_.cancel();
  probe_.cancel();
  if (session_open_) {
    session_open_ = false;
    handler_->on_channel_closed();
  }
  status_.via_gateway = false;
  gateway_server_up_ = false;
  std::string why = !fail_reason_.empty() ? fail_reason_ : end.error;
  if (end.close_code != 0) {
    why = "closed by the server (" + std::to_string(end.close_code) +
          (end.close_reason.empty() ? "" : " " + end.close_reason) + ")";
  }
  if (!end.established && explain_failure) {
    if (std::string clearer = explain_failure(why); !clearer.empty()) why = std::move(clearer);
  }
  if (endpoints_.size() > 1) why = endpoints_.current().to_string() + ": " + why;
  const bool switching = std::exchange(switching_, false);
  const bool returning = std::exchange(returning_, false);
  if (!running_) {
    set_state(ChannelState::kStopped);
    return;
  }
  if (switching) {
    schedule(switch_delay_, "");
    return;
  }
  if (returning) {
    endpoints_.to_primary();
    schedule(std::chrono::milliseconds(0),
             "returning to the preferred endpoint " + endpoints_.current().to_string());
    return;
  }
  // 1012 (service restart) and 1001 (going away): the server is fine and coming back; the
  // whole fleet hears this at once, so spread out over restart_spread.
  if (end.close_code == protocol::kCloseRevoked) {
    schedule(endpoints_.refused(backoff_), why + ": this device must be enrolled again");
    return;
  }
  if (protocol::is_restart_close(end.close_code, end.close_reason)) {
    schedule(endpoints_.restarting(backoff_), why);
    return;
  }
  schedule(endpoints_.failed(backoff_), why);
}

}  // namespace tether::agent
