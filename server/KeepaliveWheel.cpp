#include "server/KeepaliveWheel.h"

#include <algorithm>
#include <cstring>

namespace tether::server {

namespace {

constexpr std::chrono::seconds kVisitPeriod{1};
constexpr unsigned char kPingPayload[] = {'k', 'a'};

WsKeepalive* keepalive_of(lws_dll2_t* node) {
  // `node` is the first member of the standard-layout WsKeepalive.
  return reinterpret_cast<WsKeepalive*>(node);
}

}  // namespace

KeepaliveWheel::KeepaliveWheel(lws_context* ctx, std::chrono::seconds interval)
    : interval_ms_(std::max<std::int64_t>(1, interval.count()) * 1000),
      buckets_(static_cast<std::size_t>(std::max<std::int64_t>(1, interval.count() / 4))) {
  for (auto& b : buckets_) b = lws_dll2_owner_t{};
  if (ctx != nullptr) {
    timer_ = std::make_unique<LwsTimer>(ctx, [this] { on_tick(); });
    timer_->schedule(kVisitPeriod);
  }
}

KeepaliveWheel::~KeepaliveWheel() {
  timer_.reset();
  for (auto& bucket : buckets_) {
    while (lws_dll2_t* head = lws_dll2_get_head(&bucket)) lws_dll2_remove(head);
  }
}

std::int64_t KeepaliveWheel::now_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void KeepaliveWheel::add(WsKeepalive& ka, lws* wsi) {
  remove(ka);
  ka.wsi = wsi;
  ka.last_heard_ms = now_ms();
  ka.ping_due = false;
  ka.ping_sent = false;
  lws_dll2_add_tail(&ka.node, &buckets_[add_bucket_]);
  add_bucket_ = (add_bucket_ + 1) % buckets_.size();
}

void KeepaliveWheel::remove(WsKeepalive& ka) noexcept {
  if (ka.node.owner != nullptr) lws_dll2_remove(&ka.node);
  ka.wsi = nullptr;
}

void KeepaliveWheel::heard(WsKeepalive& ka) noexcept {
  ka.last_heard_ms = now_ms();
  ka.ping_sent = false;
}

bool KeepaliveWheel::write_due_ping(WsKeepalive& ka, lws* wsi) {
  if (!ka.ping_due) return true;
  ka.ping_due = false;
  // Not empty: lws 4.1.6 does not report an empty pong (LWS_CALLBACK_RECEIVE_PONG), and the
  // pong carries our payload back.
  unsigned char buf[LWS_PRE + sizeof kPingPayload];
  std::memcpy(buf + LWS_PRE, kPingPayload, sizeof kPingPayload);
  if (lws_write(wsi, buf + LWS_PRE, sizeof kPingPayload, LWS_WRITE_PING) < 0) return false;
  // The protocol may have data waiting for this WRITEABLE: it gets the next one.
  lws_callback_on_writable(wsi);
  return true;
}

KeepaliveWheel::Verdict KeepaliveWheel::judge(const WsKeepalive& ka, std::int64_t now_ms,
                                              std::int64_t interval_ms) noexcept {
  const std::int64_t silent = now_ms - ka.last_heard_ms;
  if (silent >= 2 * interval_ms) return Verdict::kClose;
  if (silent >= interval_ms && !ka.ping_sent) return Verdict::kPing;
  return Verdict::kNothing;
}

std::size_t KeepaliveWheel::size() const noexcept {
  std::size_t n = 0;
  for (const auto& b : buckets_) n += static_cast<std::size_t>(b.count);
  return n;
}

void KeepaliveWheel::visit_next(std::int64_t now) {
  lws_dll2_owner_t& bucket = buckets_[next_bucket_];
  next_bucket_ = (next_bucket_ + 1) % buckets_.size();
  // A loop that was held up (a stopped or starved process) runs its timers before it reads
  // what arrived meanwhile: the pongs are there, just not read yet. Close nobody on the
  // first visit after such a gap; the next one, a period later, judges on what was read.
  const bool after_gap =
      last_visit_ms_ != 0 && now - last_visit_ms_ > 2 * kVisitPeriod.count() * 1000;
  last_visit_ms_ = now;
  lws_start_foreach_dll_safe(lws_dll2_t*, d, next, lws_dll2_get_head(&bucket)) {
    WsKeepalive& ka = *keepalive_of(d);
    auto verdict = judge(ka, now, interval_ms_);
    if (verdict == Verdict::kClose && after_gap) verdict = Verdict::kNothing;
    switch (verdict) {
      case Verdict::kClose: {
        // Out of the wheel now; lws closes it on its next turn (CLOSED follows).
        lws* wsi = ka.wsi;
        remove(ka);
        if (wsi != nullptr) lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        break;
      }
      case Verdict::kPing:
        ka.ping_due = true;
        ka.ping_sent = true;
        if (ka.wsi != nullptr) lws_callback_on_writable(ka.wsi);
        break;
      case Verdict::kNothing: break;
    }
  }
  lws_end_foreach_dll_safe(d, next);
}

void KeepaliveWheel::on_tick() {
  visit_next(now_ms());
  timer_->schedule(kVisitPeriod);
}

}  // namespace tether::server
