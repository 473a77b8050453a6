#include "agent/UpClient.h"

#include <random>

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
      handshake_timer_(context, [this] {
        fail("no answer to hello within " +
             std::to_string(options_.connect_timeout.count() / 1000) + " s");
      }) {}

UpClient::~UpClient() {
  running_ = false;
  connection_.abort();
}

void UpClient::set_state(ChannelState s) {
  if (status_.state != s) status_.since = unix_now();
  status_.state = s;
  status_.failures = backoff_.failures();
  if (on_status) on_status(status_);
}

void UpClient::start(const protocol::ServerUrl& endpoint, std::chrono::milliseconds delay) {
  endpoint_ = endpoint;
  status_.endpoint = endpoint.to_string();
  running_ = true;
  if (connection_.active()) {
    connection_.close(1001, "switching endpoint");
    return;  // on_closed schedules the next attempt
  }
  schedule(delay, "");
}

void UpClient::stop(int code, std::string reason) {
  running_ = false;
  retry_timer_.cancel();
  handshake_timer_.cancel();
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
  auto started = connection_.connect(endpoint_);
  if (!started.ok()) {
    handshake_timer_.cancel();
    schedule(backoff_.after_failure(), started.error().message);
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
  }
}

void UpClient::network_changed() {
  if (!running_ || status_.state != ChannelState::kWaiting) return;
  schedule(backoff_.after_network_change(), status_.last_error);
}

void UpClient::on_established() {
  session_open_ = true;
  handler_->on_channel_open();
}

void UpClient::on_text(std::string_view message) {
  handler_->on_channel_message(message);
}

void UpClient::on_closed(const ChannelEnd& end) {
  handshake_timer_.cancel();
  if (session_open_) {
    session_open_ = false;
    handler_->on_channel_closed();
  }
  std::string why = !fail_reason_.empty() ? fail_reason_ : end.error;
  if (end.close_code != 0) {
    why = "closed by the server (" + std::to_string(end.close_code) +
          (end.close_reason.empty() ? "" : " " + end.close_reason) + ")";
  }
  if (!running_) {
    set_state(ChannelState::kStopped);
    return;
  }
  // 1012 (service restart) and 1001 (going away): the server is fine and coming back; the
  // whole fleet hears this at once, so spread out over restart_spread.
  if (end.close_code == protocol::kCloseRevoked) {
    schedule(backoff_.after_refusal(), why + ": this device must be enrolled again");
    return;
  }
  if (protocol::is_restart_close(end.close_code, end.close_reason)) {
    schedule(backoff_.after_server_restart(), why);
    return;
  }
  schedule(backoff_.after_failure(), why);
}

}  // namespace tether::agent
