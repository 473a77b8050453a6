// Clipboard text between the viewer and the X display. X → viewer: XFixes tells us when
// CLIPBOARD or PRIMARY gets a new owner; we convert it to UTF8_STRING on a window of our own
// and hand the text on. Viewer → X: we take both selections and answer SelectionRequests
// with UTF8_STRING, STRING or TEXT. Text above the cap is not passed on (no INCR transfers).
#pragma once

// First: Xlib #defines Status as int, so tether::Status is spelled Result<void> in vnc/.
#include "common/Result.h"

#include <X11/Xlib.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/Result.h"

namespace tether::vnc {

class X11Clipboard {
 public:
  struct Callbacks {
    std::function<void(std::string utf8)> x_text;  // new text on the X side
    std::function<void(std::string_view)> notice;  // something worth a log line
  };
  // `watch_x`: whether X's selections go to the viewer; viewer text is always accepted by
  // set_viewer_text (the caller does not call it in view-only mode).
  [[nodiscard]] static Result<std::unique_ptr<X11Clipboard>> create(Display* display,
                                                                    std::size_t max_bytes,
                                                                    Callbacks callbacks);
  ~X11Clipboard();
  X11Clipboard(const X11Clipboard&) = delete;
  X11Clipboard& operator=(const X11Clipboard&) = delete;

  // True when the event was the clipboard's.
  bool handle_event(XEvent& event);
  // The viewer copied something: own CLIPBOARD and PRIMARY with it.
  void set_viewer_text(std::string utf8);

 private:
  X11Clipboard(Display* display, std::size_t max_bytes, Callbacks callbacks);
  void on_owner_change(Atom selection, Window owner, Time when);
  void on_converted(const XSelectionEvent& event);
  void on_request(const XSelectionRequestEvent& request);

  Display* display_;
  std::size_t max_bytes_;
  Callbacks callbacks_;
  Window window_ = 0;
  int fixes_event_base_ = 0;
  Atom clipboard_ = 0;
  Atom utf8_string_ = 0;
  Atom targets_ = 0;
  Atom text_ = 0;
  Atom incr_ = 0;
  Atom property_ = 0;       // where conversions to us land
  std::string owned_text_;  // what we serve while we own the selections
  bool owning_ = false;
  std::string last_sent_;  // the last X text handed on, to skip repeats (PRIMARY churns)
};

}  // namespace tether::vnc
