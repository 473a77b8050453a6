#include "common/LwsLoop.h"

#include <cstddef>
#include <string>
#include <type_traits>

#include "common/Log.h"

namespace tether {
namespace {

void emit(int level, const char* line) {
  std::string text(line);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  // lws prefixes its lines with a timestamp and level marker; keep only the message.
  if (auto at = text.find(": "); at != std::string::npos && text.front() == '[') {
    text = text.substr(at + 2);
  }
  text = "lws: " + text;
  if (level & LLL_ERR) {
    log::error(text);
  } else if (level & LLL_WARN) {
    log::warning(text);
  } else if (level & LLL_NOTICE) {
    log::notice(text);
  } else {
    log::debug(text);
  }
}

}  // namespace

void route_lws_logging(bool verbose) {
  lws_set_log_level(LLL_ERR | LLL_WARN | (verbose ? LLL_NOTICE | LLL_INFO : 0), emit);
}

LwsTimer::LwsTimer(lws_context* ctx, std::function<void()> on_expiry)
    : ctx_(ctx), on_expiry_(std::move(on_expiry)) {
  static_assert(std::is_standard_layout_v<Node> && offsetof(Node, sul) == 0);
  node_.owner = this;
}

LwsTimer::~LwsTimer() {
  cancel();
}

void LwsTimer::schedule(std::chrono::microseconds delay) {
  pending_ = true;
  lws_sul_schedule(ctx_, 0, &node_.sul, trampoline, static_cast<lws_usec_t>(delay.count()));
}

void LwsTimer::cancel() {
  if (pending_) {
    lws_sul_schedule(ctx_, 0, &node_.sul, trampoline, LWS_SET_TIMER_USEC_CANCEL);
    pending_ = false;
  }
}

void LwsTimer::trampoline(lws_sorted_usec_list_t* sul) {
  LwsTimer* self = reinterpret_cast<Node*>(sul)->owner;
  self->pending_ = false;
  self->on_expiry_();
}

}  // namespace tether
