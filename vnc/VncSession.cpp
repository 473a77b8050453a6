#include "vnc/VncSession.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/Log.h"

namespace tether::vnc {

namespace {

// CPU time this thread has used (the session is one thread).
std::chrono::nanoseconds thread_cpu_time() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

}  // namespace

VncSession::VncSession(const VncOptions& options) : options_(options) {}

VncSession::~VncSession() {
  server_.reset();
  if (injector_) injector_->release_all();
}

Result<std::unique_ptr<VncSession>> VncSession::create(const VncOptions& options) {
  std::unique_ptr<VncSession> session(new VncSession(options));
  TETHER_TRY(session->init());
  return session;
}

Result<void> VncSession::init() {
  TETHER_ASSIGN_OR_RETURN(display_, open_display(options_.display, options_.xauthority));
  Display* dpy = display_.get();
  TETHER_ASSIGN_OR_RETURN(source_, X11FrameSource::create(dpy, options_.monitor));
  if (!options_.view_only) {
    TETHER_ASSIGN_OR_RETURN(injector_, X11InputInjector::create(dpy));
  }
  if (options_.clipboard) {
    X11Clipboard::Callbacks callbacks;
    callbacks.x_text = [this](std::string text) {
      if (server_) server_->send_cut_text(text);
    };
    callbacks.notice = [](std::string_view text) { log::notice(text); };
    TETHER_ASSIGN_OR_RETURN(clipboard_,
                            X11Clipboard::create(dpy, options_.clipboard_max, callbacks));
  }

  RfbServer::Settings settings;
  settings.desktop_name = options_.desktop_name;
  if (settings.desktop_name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    settings.desktop_name = std::string(host) + options_.display;
  }
  settings.jpeg_quality = options_.jpeg_quality;
  settings.view_only = options_.view_only;
  RfbServer::Handlers handlers;
  if (injector_) {
    handlers.key = [this](bool down, std::uint32_t keysym) { injector_->key(down, keysym); };
    handlers.pointer = [this](int mask, int x, int y) {
      injector_->pointer(mask, x, y, source_->capture());
    };
    // The viewer's clipboard reaches X only when the viewer may control the desktop.
    if (clipboard_) {
      handlers.cut_text = [this](std::string text) {
        clipboard_->set_viewer_text(std::move(text));
      };
    }
  }
  TETHER_ASSIGN_OR_RETURN(
      server_, RfbServer::create(settings, std::move(handlers), source_->pixels(), source_->width(),
                                 source_->height(), source_->layout()));
  update_cursor();
  log::info(
      "serving " + options_.display +
      (options_.monitor.empty() ? std::string(" (whole screen)") : " monitor " + options_.monitor) +
      " " + std::to_string(source_->width()) + "x" + std::to_string(source_->height()) +
      (options_.view_only ? ", view-only" : "") + (source_->uses_shm() ? "" : ", without MIT-SHM"));
  return ok_status();
}

void VncSession::update_cursor() {
  auto image = source_->cursor_image();
  if (image.ok()) {
    cursor_retries_left_ = 0;
    server_->set_cursor(*image);
    return;
  }
  // Xvfb sometimes fails the request right after a cursor change (no error, no reply) and
  // sends no further notify: ask again a little later, a few times.
  if (cursor_retries_left_ == 0) cursor_retries_left_ = kCursorRetries;
  --cursor_retries_left_;
  cursor_retry_pending_ = cursor_retries_left_ > 0;
  if (!cursor_retry_pending_) log::notice("cursor shape unavailable: " + image.error().what());
}

Result<void> VncSession::handle_x_events() {
  Display* dpy = display_.get();
  bool geometry = false;
  bool cursor = false;
  while (XPending(dpy) > 0) {
    XEvent event;
    XNextEvent(dpy, &event);
    switch (source_->handle_event(event)) {
      case X11FrameSource::EventKind::kGeometry: geometry = true; continue;
      case X11FrameSource::EventKind::kCursor: cursor = true; continue;
      case X11FrameSource::EventKind::kDamage: continue;
      case X11FrameSource::EventKind::kNotMine: break;
    }
    if (clipboard_) (void)clipboard_->handle_event(event);
  }
  if (geometry) {
    TETHER_ASSIGN_OR_RETURN(bool replaced, source_->refresh_geometry());
    if (replaced) {
      server_->replace_framebuffer(source_->pixels(), source_->width(), source_->height(),
                                   source_->layout());
      source_->release_previous();
      log::info("screen is now " + std::to_string(source_->width()) + "x" +
                std::to_string(source_->height()));
    } else {
      server_->mark_modified(Rect{0, 0, source_->width(), source_->height()});
    }
  }
  if (cursor) update_cursor();
  return ok_status();
}

Result<bool> VncSession::grab_if_wanted() {
  if (!source_->has_damage() || !server_->wants_update()) return false;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_grab_ < grab_interval()) return false;  // poll_timeout_ms() wakes us
  last_grab_ = now;
  TETHER_ASSIGN_OR_RETURN(std::vector<Rect> grabbed, source_->grab_damage());
  for (const Rect& r : grabbed) server_->mark_modified(r);
  return !grabbed.empty();
}

std::chrono::steady_clock::duration VncSession::grab_interval() const {
  return std::max<std::chrono::steady_clock::duration>(kMinGrabInterval,
                                                       kMaxCpuShareDivisor * last_update_cpu_);
}

int VncSession::poll_timeout_ms() const {
  int timeout = cursor_retry_pending_ ? kCursorRetryMs : -1;
  if (source_->has_damage() && server_->wants_update()) {
    const auto due = last_grab_ + grab_interval() - std::chrono::steady_clock::now();
    // Rounded up: waking a little early would only mean another wait.
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(due).count();
    const int grab_in = ms > 0 ? static_cast<int>(ms) : 0;
    timeout = timeout < 0 ? grab_in : std::min(timeout, grab_in);
  }
  return timeout;
}

Result<void> VncSession::run(UniqueFd socket) {
  // Signals arrive as readable data on a signalfd, so the loop ends cleanly (shared memory
  // detached, keys released) when the agent stops us.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  if (sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) {
    return make_error(Errc::kInternal, std::string("sigprocmask: ") + std::strerror(errno));
  }
  UniqueFd signal_fd(signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd)
    return make_error(Errc::kInternal, std::string("signalfd: ") + std::strerror(errno));

  if (Result<void> attached = server_->attach(socket.release()); !attached.ok()) {
    // Whatever the viewer does ends the session normally (status 0); the log says what.
    if (attached.error().code == Errc::kUnavailable) {
      log::notice(attached.error().what());
    } else {
      log::warning(attached.error().what());
    }
    return ok_status();
  }
  Display* dpy = display_.get();
  const int x_fd = ConnectionNumber(dpy);
  while (!server_->client_gone()) {
    TETHER_TRY(handle_x_events());
    // Read what the viewer sent first: an update request that just arrived is what makes
    // a grab worth doing; then send what the grab found.
    server_->process();
    const auto cpu_before = thread_cpu_time();
    TETHER_ASSIGN_OR_RETURN(bool grabbed, grab_if_wanted());
    if (grabbed) {
      server_->process();
      last_update_cpu_ = thread_cpu_time() - cpu_before;
    }
    XFlush(dpy);
    if (server_->client_gone()) break;
    if (XPending(dpy) > 0) continue;  // events queued while we worked: no wait

    pollfd fds[3] = {
        {x_fd, POLLIN, 0}, {server_->client_socket(), POLLIN, 0}, {signal_fd.get(), POLLIN, 0}};
    const int n = poll(fds, 3, poll_timeout_ms());
    if (n == 0 && cursor_retry_pending_) {
      cursor_retry_pending_ = false;
      update_cursor();
    }
    if (n < 0 && errno != EINTR) {
      return make_error(Errc::kIo, std::string("poll: ") + std::strerror(errno));
    }
    if (fds[2].revents & POLLIN) {
      signalfd_siginfo info{};
      if (read(signal_fd.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        log::info(std::string("stopping on ") + strsignal(static_cast<int>(info.ssi_signo)));
      }
      return ok_status();
    }
    if (fds[0].revents & (POLLERR | POLLHUP)) {
      return make_error(Errc::kIo, "lost the X display " + options_.display);
    }
  }
  log::info("viewer left");
  return ok_status();
}

}  // namespace tether::vnc
