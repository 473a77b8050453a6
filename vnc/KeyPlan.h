// How to press a key for a keysym the viewer sent: which keycode, and what to do with Shift
// so that X produces that keysym and not its neighbour on the same key. Pure; the X part
// (looking up keycodes and their keysyms) is in X11InputInjector.
#pragma once

#include <cstdint>

namespace tether::vnc {

enum class ShiftAction {
  kAsIs,     // the shift state the viewer set already gives the keysym (or Shift does not matter)
  kPress,    // the keysym is on the shifted level but Shift is up: press Shift around the key
  kRelease,  // the keysym is on the plain level but Shift is down: lift Shift around the key
};

// `level0`/`level1`: the keycode's keysyms without and with Shift (group 1), as X resolves
// them: a missing level1 is level0, or its upper case for letters (XConvertCase).
// `shift_down`: whether the viewer holds Shift. Keysyms on neither level (AltGr levels,
// anything unusual) are sent as they are.
[[nodiscard]] ShiftAction plan_shift(std::uint32_t keysym, std::uint32_t level0,
                                     std::uint32_t level1, bool shift_down) noexcept;

}  // namespace tether::vnc
