// One shadowing session: the X display, its frame source, input and clipboard, and the RFB
// server for the one viewer on the inherited socket, driven by a single-threaded poll()
// loop until the viewer leaves.
//
// Why not libwebsockets here, unlike every other Tether process: tether-vnc has no network
// listener and speaks no WebSocket; libvncserver owns the RFB socket's I/O (its reads and
// writes are blocking-with-select internally) and must be driven with rfbProcessEvents, and
// Xlib needs its event queue drained before each wait. A small poll() over the X fd, the
// RFB socket and a signalfd is the whole loop; an lws context would add a dependency and
// an adoption layer for nothing.
#pragma once

#include <chrono>
#include <memory>

#include "common/Result.h"
#include "common/UniqueFd.h"
#include "vnc/RfbServer.h"
#include "vnc/VncOptions.h"
#include "vnc/X11Clipboard.h"
#include "vnc/X11Display.h"
#include "vnc/X11FrameSource.h"
#include "vnc/X11InputInjector.h"

namespace tether::vnc {

class VncSession {
 public:
  // Opens the display and sets everything up; the viewer is not yet attached.
  [[nodiscard]] static Result<std::unique_ptr<VncSession>> create(const VncOptions& options);
  ~VncSession();
  VncSession(const VncSession&) = delete;
  VncSession& operator=(const VncSession&) = delete;

  // Serves the viewer on `socket` until it leaves (ok) or SIGTERM/SIGINT/SIGHUP arrives
  // (ok); an error means the X side failed.
  [[nodiscard]] Result<void> run(UniqueFd socket);

 private:
  explicit VncSession(const VncOptions& options);
  [[nodiscard]] Result<void> init();
  [[nodiscard]] Result<void> handle_x_events();
  // Grabs the damaged areas when the viewer waits for an update and the last grab is
  // grab_interval() ago; true when it did.
  [[nodiscard]] Result<bool> grab_if_wanted();
  // How long poll() may wait: -1 (for ever) unless a grab or a cursor retry is due.
  [[nodiscard]] int poll_timeout_ms() const;
  void update_cursor();

  VncOptions options_;
  DisplayPtr display_;
  std::unique_ptr<X11FrameSource> source_;
  std::unique_ptr<X11InputInjector> injector_;  // null in view-only mode
  std::unique_ptr<X11Clipboard> clipboard_;     // null with --no-clipboard
  std::unique_ptr<RfbServer> server_;           // last: destroyed first

  // Continuous change (a scrolling terminal, a dragged window) goes out at most this often
  // (20 updates a second, about what x11vnc's -wait 20 -defer 20 polling gives): the X
  // server accumulates the damage in between, so nothing is lost and the bytes and CPU of
  // each frame are not spent on intermediate ones. A change after a quiet spell still goes
  // out at once.
  static constexpr std::chrono::milliseconds kMinGrabInterval{50};
  // And at most half of a core goes to updates: after an update that took W of CPU (grab and
  // encoding) the next grab waits at least 2·W. A thin client's own session needs the
  // rest; an expensive picture (a photo dragged around, ZRLE) then goes out less often, in
  // the same quality (bench/session).
  static constexpr int kMaxCpuShareDivisor = 2;
  [[nodiscard]] std::chrono::steady_clock::duration grab_interval() const;
  std::chrono::steady_clock::time_point last_grab_{};
  std::chrono::nanoseconds last_update_cpu_{0};

  static constexpr int kCursorRetries = 5;
  static constexpr int kCursorRetryMs = 50;
  int cursor_retries_left_ = 0;
  bool cursor_retry_pending_ = false;
};

}  // namespace tether::vnc
