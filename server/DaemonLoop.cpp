#include "server/DaemonLoop.h"

#include <atomic>
#include <csignal>
#include <exception>
#include <string>

#include "common/Log.h"

namespace tether::server {
namespace {

volatile std::sig_atomic_t g_stop_requested = 0;
std::atomic<lws_context*> g_context{nullptr};

void on_signal(int) {
  g_stop_requested = 1;
  if (lws_context* ctx = g_context.load()) lws_cancel_service(ctx);
}

}  // namespace

DaemonLoop::DaemonLoop(std::chrono::milliseconds tick, std::chrono::milliseconds grace, Hooks hooks)
    : tick_interval_(tick), grace_(grace), hooks_(std::move(hooks)) {}

DaemonLoop::~DaemonLoop() {
  tick_.reset();
  g_context.store(nullptr);
}

void DaemonLoop::install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  (void)std::signal(SIGPIPE, SIG_IGN);
}

void DaemonLoop::request_stop() noexcept {
  on_signal(0);
}

void DaemonLoop::run(lws_context* ctx) {
  g_context.store(ctx);
  tick_ = std::make_unique<LwsTimer>(ctx, [this] { on_tick(); });
  tick_->schedule(tick_interval_);
  // A signal that arrived before the context existed could not wake the loop.
  if (g_stop_requested) begin_shutdown();
  for (;;) {
    if (stopping_ && (hooks_.drained() || std::chrono::steady_clock::now() >= deadline_)) {
      break;
    }
    if (lws_service(ctx, 0) < 0) break;
  }
  tick_.reset();
  g_context.store(nullptr);
}

void DaemonLoop::on_wake() {
  if (g_stop_requested && !stopping_) begin_shutdown();
}

void DaemonLoop::begin_shutdown() {
  stopping_ = true;
  deadline_ = std::chrono::steady_clock::now() + grace_;
  hooks_.begin_shutdown();
}

void DaemonLoop::on_tick() {
  // A timer callback from lws: nothing may escape into C.
  try {
    hooks_.tick();
  } catch (const std::exception& e) {
    log::error(std::string("periodic work failed: ") + e.what());
  } catch (...) {
    log::error("periodic work failed");
  }
  tick_->schedule(tick_interval_);
}

}  // namespace tether::server
