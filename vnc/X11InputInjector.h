// The viewer's keyboard and pointer, replayed on the X display with XTest. Never created in
// view-only mode (the RFB server registers no input handlers then).
#pragma once

// First: Xlib #defines Status as int, so tether::Status is spelled Result<void> in vnc/.
#include "common/Result.h"

#include <X11/Xlib.h>

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "common/Result.h"
#include "vnc/Geometry.h"

namespace tether::vnc {

class X11InputInjector {
 public:
  [[nodiscard]] static Result<std::unique_ptr<X11InputInjector>> create(Display* display);
  ~X11InputInjector();
  X11InputInjector(const X11InputInjector&) = delete;
  X11InputInjector& operator=(const X11InputInjector&) = delete;

  // A keysym pressed or released on the viewer.
  void key(bool down, std::uint32_t keysym);
  // RFB button mask (bit 0 = button 1 … bit 6 = button 7) at (x, y) in framebuffer
  // coordinates; `capture` is where the framebuffer lies on the root window.
  void pointer(int button_mask, int x, int y, const Rect& capture);
  // Lifts every key and button still held (the viewer left in the middle of a chord).
  void release_all();

 private:
  explicit X11InputInjector(Display* display);
  [[nodiscard]] KeyCode keycode_for(KeySym keysym);
  void fake_key(KeyCode code, bool down);
  void set_shift(bool down);

  Display* display_;
  KeyCode shift_code_ = 0;
  int button_mask_ = 0;
  bool shift_down_ = false;                   // as the viewer holds it
  std::map<std::uint32_t, KeyCode> pressed_;  // keysym → the keycode pressed for it
  // Keycodes without keysyms that we bound to keysyms the keymap lacks, and what they were.
  std::vector<KeyCode> spare_codes_;
  std::map<KeySym, KeyCode> bound_;
  std::size_t next_spare_ = 0;
};

}  // namespace tether::vnc
