#include "vnc/X11InputInjector.h"

#include <X11/XKBlib.h>
#include <X11/Xutil.h>
#include <X11/extensions/XTest.h>
#include <X11/keysym.h>

#include "vnc/KeyPlan.h"

namespace tether::vnc {
namespace {

constexpr int kButtons = 7;

}  // namespace

X11InputInjector::X11InputInjector(Display* display) : display_(display) {}

Result<std::unique_ptr<X11InputInjector>> X11InputInjector::create(Display* display) {
  int event_base = 0;
  int error_base = 0;
  int major = 0;
  int minor = 0;
  if (!XTestQueryExtension(display, &event_base, &error_base, &major, &minor)) {
    return make_error(Errc::kUnavailable, "the X server has no XTEST extension");
  }
  std::unique_ptr<X11InputInjector> injector(new X11InputInjector(display));
  injector->shift_code_ = XKeysymToKeycode(display, XK_Shift_L);
  // Keycodes with no keysym at all: places to bind keysyms the keymap does not have (a
  // viewer typing a character of another layout).
  int min_code = 0;
  int max_code = 0;
  XDisplayKeycodes(display, &min_code, &max_code);
  int per_code = 0;
  KeySym* map = XGetKeyboardMapping(display, static_cast<KeyCode>(min_code),
                                    max_code - min_code + 1, &per_code);
  if (map != nullptr) {
    for (int code = max_code; code >= min_code; --code) {
      bool empty = true;
      for (int k = 0; k < per_code; ++k) {
        if (map[(code - min_code) * per_code + k] != NoSymbol) empty = false;
      }
      if (empty && injector->spare_codes_.size() < 8) {
        injector->spare_codes_.push_back(static_cast<KeyCode>(code));
      }
    }
    XFree(map);
  }
  return injector;
}

X11InputInjector::~X11InputInjector() {
  release_all();
  // Give back the keycodes we bound.
  for (const auto& [sym, code] : bound_) {
    KeySym none = NoSymbol;
    XChangeKeyboardMapping(display_, code, 1, &none, 1);
  }
  XFlush(display_);
}

KeyCode X11InputInjector::keycode_for(KeySym keysym) {
  KeyCode code = XKeysymToKeycode(display_, keysym);
  if (code != 0) return code;
  if (auto it = bound_.find(keysym); it != bound_.end()) return it->second;
  if (spare_codes_.empty()) return 0;
  // Bind the keysym to a spare keycode (both levels, so Shift does not change it), taking
  // the spares round robin.
  const KeyCode spare = spare_codes_[next_spare_++ % spare_codes_.size()];
  for (auto it = bound_.begin(); it != bound_.end(); ++it) {
    if (it->second == spare) {
      bound_.erase(it);
      break;
    }
  }
  KeySym syms[2] = {keysym, keysym};
  XChangeKeyboardMapping(display_, spare, 2, syms, 1);
  XSync(display_, False);
  bound_[keysym] = spare;
  return spare;
}

void X11InputInjector::fake_key(KeyCode code, bool down) {
  XTestFakeKeyEvent(display_, code, down ? True : False, CurrentTime);
}

void X11InputInjector::set_shift(bool down) {
  if (shift_code_ != 0) fake_key(shift_code_, down);
}

void X11InputInjector::key(bool down, std::uint32_t keysym) {
  if (keysym == XK_Shift_L || keysym == XK_Shift_R) shift_down_ = down;
  if (!down) {
    // Release the keycode this keysym was pressed on, even if Shift changed meanwhile.
    auto it = pressed_.find(keysym);
    KeyCode code = it != pressed_.end() ? it->second : XKeysymToKeycode(display_, keysym);
    if (it != pressed_.end()) pressed_.erase(it);
    if (code != 0) fake_key(code, false);
    XFlush(display_);
    return;
  }
  const KeyCode code = keycode_for(keysym);
  if (code == 0) return;  // nothing to press (no spare keycodes left)
  KeySym level0 = XkbKeycodeToKeysym(display_, code, 0, 0);
  KeySym level1 = XkbKeycodeToKeysym(display_, code, 0, 1);
  if (level1 == NoSymbol) {
    // X's rule for a key with one keysym: Shift gives its upper case (or itself).
    KeySym lower = NoSymbol;
    KeySym upper = NoSymbol;
    XConvertCase(level0, &lower, &upper);
    level1 = upper;
  }
  const ShiftAction action = plan_shift(keysym, static_cast<std::uint32_t>(level0),
                                        static_cast<std::uint32_t>(level1), shift_down_);
  if (action == ShiftAction::kPress) set_shift(true);
  if (action == ShiftAction::kRelease) set_shift(false);
  fake_key(code, true);
  pressed_[keysym] = code;
  if (action == ShiftAction::kPress) set_shift(false);
  if (action == ShiftAction::kRelease) set_shift(true);
  XFlush(display_);
}

void X11InputInjector::pointer(int button_mask, int x, int y, const Rect& capture) {
  const Point at = to_root_coords(x, y, capture);
  XTestFakeMotionEvent(display_, DefaultScreen(display_), at.x, at.y, CurrentTime);
  for (int b = 0; b < kButtons; ++b) {
    const int bit = 1 << b;
    if ((button_mask & bit) != (button_mask_ & bit)) {
      XTestFakeButtonEvent(display_, static_cast<unsigned>(b + 1),
                           (button_mask & bit) ? True : False, CurrentTime);
    }
  }
  button_mask_ = button_mask & ((1 << kButtons) - 1);
  XFlush(display_);
}

void X11InputInjector::release_all() {
  for (const auto& [sym, code] : pressed_) fake_key(code, false);
  pressed_.clear();
  if (shift_down_) set_shift(false);
  shift_down_ = false;
  for (int b = 0; b < kButtons; ++b) {
    if (button_mask_ & (1 << b)) {
      XTestFakeButtonEvent(display_, static_cast<unsigned>(b + 1), False, CurrentTime);
    }
  }
  button_mask_ = 0;
  XFlush(display_);
}

}  // namespace tether::vnc
