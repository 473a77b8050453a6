// The picture tether-vnc serves: the X root window, or one XRandR monitor's part of it,
// copied into a framebuffer with MIT-SHM. XDamage says which rectangles changed, so an idle
// desktop costs nothing: no polling, no grabs. XRandR events resize the framebuffer; XFixes
// cursor events give the cursor shape.
#pragma once

// First: Xlib #defines Status as int, so tether::Status is spelled Result<void> in vnc/.
#include "common/Result.h"

#include <X11/Xlib.h>
#include <X11/extensions/XShm.h>
#include <X11/extensions/Xdamage.h>

#include <memory>
#include <string>
#include <vector>

#include "common/Result.h"
#include "vnc/Geometry.h"
#include "vnc/RfbServer.h"

namespace tether::vnc {

class X11FrameSource {
 public:
  // `monitor`: an XRandR monitor name, or empty for the whole screen.
  [[nodiscard]] static Result<std::unique_ptr<X11FrameSource>> create(Display* display,
                                                                      std::string monitor);
  ~X11FrameSource();
  X11FrameSource(const X11FrameSource&) = delete;
  X11FrameSource& operator=(const X11FrameSource&) = delete;

  [[nodiscard]] char* pixels() noexcept { return framebuffer_.get(); }
  [[nodiscard]] int width() const noexcept { return capture_.width; }
  [[nodiscard]] int height() const noexcept { return capture_.height; }
  [[nodiscard]] const PixelLayout& layout() const noexcept { return layout_; }
  // The captured area in root coordinates (where viewer pointer positions land).
  [[nodiscard]] const Rect& capture() const noexcept { return capture_; }
  [[nodiscard]] bool uses_shm() const noexcept { return shm_attached_; }

  enum class EventKind { kNotMine, kDamage, kGeometry, kCursor };
  // Classifies (and for RandR, applies) an X event.
  EventKind handle_event(XEvent& event);

  [[nodiscard]] bool has_damage() const noexcept { return damage_pending_; }
  // Copies what changed since the last call; returns the rectangles in framebuffer
  // coordinates whose pixels differ (damaged tiles that X redrew unchanged are left out).
  [[nodiscard]] Result<std::vector<Rect>> grab_damage();
  [[nodiscard]] Result<void> grab_all();

  // After a geometry event: re-reads the screen or monitor. Returns true when the
  // framebuffer was replaced (size or layout changed): hand the new pixels() to the RFB
  // server, then call release_previous(). Fails when the monitor is gone.
  [[nodiscard]] Result<bool> refresh_geometry();
  void release_previous() noexcept { previous_framebuffer_.reset(); }

  [[nodiscard]] Result<CursorImage> cursor_image();

 private:
  X11FrameSource(Display* display, std::string monitor);
  [[nodiscard]] Result<void> init();
  [[nodiscard]] Result<Rect> find_capture();
  [[nodiscard]] Result<void> allocate();
  void release_shm() noexcept;
  // Copies `local` from the screen; with `changed`, only the tiles that differ, appending
  // them there.
  [[nodiscard]] Result<void> grab(const Rect& local, std::vector<Rect>* changed);

  Display* display_;
  std::string monitor_;
  Window root_;
  Visual* visual_ = nullptr;
  int depth_ = 0;
  PixelLayout layout_;
  Rect capture_;
  std::unique_ptr<char[]> framebuffer_;
  std::unique_ptr<char[]> previous_framebuffer_;

  bool use_shm_ = false;
  bool shm_attached_ = false;
  XShmSegmentInfo shm_{};

  int damage_event_base_ = 0;
  int randr_event_base_ = 0;
  int fixes_event_base_ = 0;
  Damage damage_ = 0;
  XID repair_region_ = 0;  // XserverRegion
  bool damage_pending_ = false;
};

}  // namespace tether::vnc
