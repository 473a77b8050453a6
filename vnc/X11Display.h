// The X connection tether-vnc works on: RAII for Display*, the XAUTHORITY it needs, the
// extensions it relies on, and the XRandR monitor list.
#pragma once

// First: Xlib #defines Status as int, so tether::Status is spelled Result<void> in vnc/.
#include "common/Result.h"

#include <X11/Xlib.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/Result.h"
#include "vnc/Geometry.h"

namespace tether::vnc {

struct DisplayCloser {
  void operator()(Display* display) const noexcept { XCloseDisplay(display); }
};
using DisplayPtr = std::unique_ptr<Display, DisplayCloser>;

// Sets XAUTHORITY to the first readable of `xauthority` (when any is given) and connects.
// Xlib does not say why a connection failed, so the error lists the usual causes.
[[nodiscard]] Result<DisplayPtr> open_display(const std::string& name,
                                              const std::vector<std::string>& xauthority);

// Protocol errors (a window that vanished under a request, a grab racing a screen resize)
// are counted and remembered instead of killing the process; the I/O error handler (the X
// server went away) logs and exits with status 1. Call once per process.
void install_x_error_handlers();

// The number of X protocol errors so far and the last one in words.
[[nodiscard]] unsigned long x_error_count() noexcept;
[[nodiscard]] std::string last_x_error();

// RandR 1.5 monitors of the default screen (at least one: the whole screen when RandR has
// none).
[[nodiscard]] Result<std::vector<Monitor>> list_monitors(Display* display);

// The whole root window.
[[nodiscard]] Rect root_area(Display* display);

}  // namespace tether::vnc
