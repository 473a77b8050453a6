#include "agent/LogindBridge.h"

#include <poll.h>

#include "common/Log.h"

namespace tether::agent {

LogindBridge::LogindBridge(lws_context* ctx, lws_vhost* vhost)
    : vhost_(vhost), timer_(ctx, [this] { pump(); }) {
  auto logind = platform::Logind::connect();
  if (!logind.ok()) {
    connect_error_ = logind.error().message;
    return;
  }
  logind_ = std::move(logind).value();
  auto watch = LwsFdWatcher::watch(
      vhost_, logind_->fd(), [this] { pump(); }, [this] { pump(); });
  if (!watch.ok()) {
    connect_error_ = watch.error().message;
    logind_.reset();
    return;
  }
  watch_ = std::move(watch).value();
  rearm();
}

LogindBridge::~LogindBridge() {
  timer_.cancel();
  watch_.reset();
  logind_.reset();  // drops calls in flight without running their callbacks
}

void LogindBridge::rearm() {
  if (!logind_) return;
  if ((logind_->poll_events() & POLLOUT) != 0 && watch_) watch_->want_write();
  if (auto t = logind_->timeout()) {
    timer_.schedule(*t);
  } else {
    timer_.cancel();
  }
}

void LogindBridge::pump() {
  if (!logind_ || pumping_) return;
  pumping_ = true;
  auto processed = logind_->process();
  pumping_ = false;
  if (!processed.ok()) {
    log::warning("logind: " + processed.error().message);
    if (processed.error().code == Errc::kUnavailable) {
      connect_error_ = "lost the connection to the system bus: " + processed.error().message;
      timer_.cancel();
      watch_.reset();
      logind_.reset();
      return;
    }
  }
  rearm();
}

void LogindBridge::reboot(platform::Logind::Done done) {
  if (!logind_) {
    done(make_error(Errc::kUnavailable, "logind is not reachable: " + connect_error_));
    return;
  }
  logind_->reboot(std::move(done));
  rearm();
}

void LogindBridge::power_off(platform::Logind::Done done) {
  if (!logind_) {
    done(make_error(Errc::kUnavailable, "logind is not reachable: " + connect_error_));
    return;
  }
  logind_->power_off(std::move(done));
  rearm();
}

void LogindBridge::find_graphical_session(platform::Logind::SessionDone done) {
  if (!logind_) {
    done(make_error(Errc::kUnavailable, "logind is not reachable: " + connect_error_));
    return;
  }
  logind_->find_graphical_session(std::move(done));
  rearm();
}

}  // namespace tether::agent
