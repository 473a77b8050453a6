#include "vnc/X11Display.h"

#include <X11/extensions/Xrandr.h>
#include <unistd.h>

#include <cstdio>

#include "common/Log.h"
#include "vnc/Xauthority.h"

namespace tether::vnc {
namespace {

unsigned long g_error_count = 0;
std::string g_last_error;

int on_x_error(Display* display, XErrorEvent* event) {
  char text[256] = {};
  XGetErrorText(display, event->error_code, text, sizeof text);
  ++g_error_count;
  g_last_error = std::string(text) + " (request " + std::to_string(event->request_code) + "." +
                 std::to_string(event->minor_code) + ")";
  return 0;
}

int on_x_io_error(Display* display) {
  log::error(std::string("lost the X display ") + DisplayString(display));
  // Xlib must not be used any more; nothing else is worth cleaning up on the way out (the
  // shared memory segment is already marked for removal).
  _exit(1);
}

}  // namespace

Result<DisplayPtr> open_display(const std::string& name,
                                const std::vector<std::string>& xauthority) {
  if (auto authority = use_first_readable_xauthority(xauthority); !authority) {
    return authority.error().context("cannot open display " + name);
  }
  Display* display = XOpenDisplay(name.c_str());
  if (display == nullptr) {
    return make_error(Errc::kUnavailable,
                      "cannot open display " + name +
                          ": no X server there, or it refused us (wrong XAUTHORITY or user)");
  }
  return DisplayPtr(display);
}

void install_x_error_handlers() {
  XSetErrorHandler(on_x_error);
  XSetIOErrorHandler(on_x_io_error);
}

unsigned long x_error_count() noexcept {
  return g_error_count;
}

std::string last_x_error() {
  return g_last_error;
}

Rect root_area(Display* display) {
  const int screen = DefaultScreen(display);
  return Rect{0, 0, DisplayWidth(display, screen), DisplayHeight(display, screen)};
}

Result<std::vector<Monitor>> list_monitors(Display* display) {
  std::vector<Monitor> out;
  int event_base = 0;
  int error_base = 0;
  int major = 0;
  int minor = 0;
  const bool has_monitors = XRRQueryExtension(display, &event_base, &error_base) &&
                            XRRQueryVersion(display, &major, &minor) &&
                            (major > 1 || (major == 1 && minor >= 5));
  if (has_monitors) {
    int count = 0;
    XRRMonitorInfo* monitors = XRRGetMonitors(display, DefaultRootWindow(display), True, &count);
    for (int i = 0; monitors != nullptr && i < count; ++i) {
      Monitor m;
      if (char* name = XGetAtomName(display, monitors[i].name)) {
        m.name = name;
        XFree(name);
      }
      m.area = Rect{monitors[i].x, monitors[i].y, monitors[i].width, monitors[i].height};
      m.primary = monitors[i].primary != 0;
      out.push_back(std::move(m));
    }
    if (monitors != nullptr) XRRFreeMonitors(monitors);
  }
  if (out.empty()) out.push_back(Monitor{"screen", root_area(display), true});
  return out;
}

}  // namespace tether::vnc
