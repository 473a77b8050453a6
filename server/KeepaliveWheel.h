// Keepalive for the WebSockets a server holds (UP channels, gateway links, tunnel ends):
// a connection silent for one interval gets a ping; one silent for two is closed.
//
// libwebsockets 4.1.6 can do this itself (a retry policy's secs_since_valid_ping), but it
// keeps one timer per connection in a sorted list and re-inserts it on every pong by walking
// the list from its head: O(connections) per pong, so an idle fleet's CPU grows with the
// square of its size, and the pings go out one wakeup at a time, each a poll() over every
// descriptor (bench/fleet). Here connections sit in a wheel of buckets visited by one timer:
// each visit is O(that bucket), and the pings of a bucket go out in one turn of the loop.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/LwsLoop.h"

namespace tether::server {

// Per-connection state, kept in the connection's lws per-session data (zeroed by lws).
struct WsKeepalive {
  lws_dll2_t node;  // in a bucket while registered
  lws* wsi;         // not owned; cleared when the connection closes
  std::int64_t last_heard_ms;
  bool ping_due;   // a ping is to be written at the next WRITEABLE
  bool ping_sent;  // a ping went out since the peer was last heard
};

class KeepaliveWheel {
 public:
  // Silence of `interval` gets a ping, of twice `interval` a close. Visits come every
  // interval / 4 (at least a second), so a dead peer is closed after 2 to 2.25 intervals.
  KeepaliveWheel(lws_context* ctx, std::chrono::seconds interval);
  ~KeepaliveWheel();
  KeepaliveWheel(const KeepaliveWheel&) = delete;
  KeepaliveWheel& operator=(const KeepaliveWheel&) = delete;

  // LWS_CALLBACK_ESTABLISHED: the connection is watched from now on.
  void add(WsKeepalive& ka, lws* wsi);
  // LWS_CALLBACK_CLOSED (safe when never added or already removed).
  static void remove(WsKeepalive& ka) noexcept;
  // Anything received (a message piece, a pong): the peer is alive.
  static void heard(WsKeepalive& ka) noexcept;
  // LWS_CALLBACK_SERVER_WRITEABLE, before the protocol writes: writes a due ping and asks
  // for another WRITEABLE for the protocol's own data. False when lws could not write it
  // (the connection should be closed).
  [[nodiscard]] static bool write_due_ping(WsKeepalive& ka, lws* wsi);

  // What one visit decides for a connection (public for the unit test).
  enum class Verdict { kNothing, kPing, kClose };
  [[nodiscard]] static Verdict judge(const WsKeepalive& ka, std::int64_t now_ms,
                                     std::int64_t interval_ms) noexcept;

  // Before the lws context goes: no more visits (the lists stay for the close callbacks).
  void stop() noexcept { timer_.reset(); }

  [[nodiscard]] std::size_t size() const noexcept;
  [[nodiscard]] std::size_t buckets() const noexcept { return buckets_.size(); }
  // Visits one bucket (the timer does this; tests call it with their own clock).
  void visit_next(std::int64_t now_ms);

  [[nodiscard]] static std::int64_t now_ms() noexcept;

 private:
  void on_tick();

  std::int64_t interval_ms_;
  std::vector<lws_dll2_owner_t> buckets_;
  std::size_t next_bucket_ = 0;  // the bucket the next visit takes
  std::size_t add_bucket_ = 0;   // new connections go round the buckets in turn
  std::int64_t last_visit_ms_ = 0;
  std::unique_ptr<LwsTimer> timer_;
};

}  // namespace tether::server
