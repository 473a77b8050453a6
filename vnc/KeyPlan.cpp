#include "vnc/KeyPlan.h"

namespace tether::vnc {

ShiftAction plan_shift(std::uint32_t keysym, std::uint32_t level0, std::uint32_t level1,
                       bool shift_down) noexcept {
  // Keys that are the same with and without Shift (Return, arrows, space, modifiers): the
  // viewer's Shift is meant for the application (Shift+Left selects), keep it.
  if (level0 == keysym && level1 == keysym) return ShiftAction::kAsIs;
  if (level0 == keysym) return shift_down ? ShiftAction::kRelease : ShiftAction::kAsIs;
  if (level1 == keysym) return shift_down ? ShiftAction::kAsIs : ShiftAction::kPress;
  return ShiftAction::kAsIs;
}

}  // namespace tether::vnc
