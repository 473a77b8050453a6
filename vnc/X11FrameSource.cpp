#include "vnc/X11FrameSource.h"

#include <X11/Xutil.h>
#include <X11/extensions/Xfixes.h>
#include <X11/extensions/Xrandr.h>
#include <sys/ipc.h>
#include <sys/shm.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "vnc/X11Display.h"

namespace tether::vnc {
namespace {

// Beyond this many damaged rectangles one grab of their bounding box is cheaper than a
// round trip each.
constexpr std::size_t kMaxGrabRects = 32;
// Grabbed pixels are compared with the framebuffer in tiles of this size (as x11vnc does):
// only differing tiles go to the viewer.
constexpr int kTile = 32;

}  // namespace

X11FrameSource::X11FrameSource(Display* display, std::string monitor)
    : display_(display), monitor_(std::move(monitor)), root_(DefaultRootWindow(display)) {}

X11FrameSource::~X11FrameSource() {
  if (damage_ != 0) XDamageDestroy(display_, damage_);
  if (repair_region_ != 0) XFixesDestroyRegion(display_, repair_region_);
  release_shm();
  XSync(display_, False);
}

Result<std::unique_ptr<X11FrameSource>> X11FrameSource::create(Display* display,
                                                               std::string monitor) {
  std::unique_ptr<X11FrameSource> source(new X11FrameSource(display, std::move(monitor)));
  TETHER_TRY(source->init());
  return source;
}

Result<void> X11FrameSource::init() {
  const int screen = DefaultScreen(display_);
  visual_ = DefaultVisual(display_, screen);
  depth_ = DefaultDepth(display_, screen);
  if (visual_->c_class != TrueColor) {
    return make_error(Errc::kBadValue, "the X display's default visual is not TrueColor");
  }
  XImage* probe = XCreateImage(display_, visual_, static_cast<unsigned>(depth_), ZPixmap, 0,
                               nullptr, 1, 1, 32, 0);
  if (probe == nullptr) return make_error(Errc::kInternal, "XCreateImage failed");
  layout_.bits_per_pixel = probe->bits_per_pixel;
  layout_.big_endian = probe->byte_order == MSBFirst;
  XDestroyImage(probe);
  if (layout_.bits_per_pixel != 16 && layout_.bits_per_pixel != 32) {
    return make_error(Errc::kBadValue,
                      "unsupported X pixel size: " + std::to_string(layout_.bits_per_pixel) +
                          " bits (depth " + std::to_string(depth_) + ")");
  }
  layout_.depth = depth_;
  layout_.red_mask = static_cast<std::uint32_t>(visual_->red_mask);
  layout_.green_mask = static_cast<std::uint32_t>(visual_->green_mask);
  layout_.blue_mask = static_cast<std::uint32_t>(visual_->blue_mask);

  int error_base = 0;
  if (!XDamageQueryExtension(display_, &damage_event_base_, &error_base)) {
    return make_error(Errc::kUnavailable, "the X server has no DAMAGE extension");
  }
  if (!XFixesQueryExtension(display_, &fixes_event_base_, &error_base)) {
    return make_error(Errc::kUnavailable, "the X server has no XFIXES extension");
  }
  if (!XRRQueryExtension(display_, &randr_event_base_, &error_base)) randr_event_base_ = -1;
  // A local display shares memory; a remote one (or a server without MIT-SHM) is read with
  // plain XGetImage.
  use_shm_ = XShmQueryExtension(display_) == True;

  TETHER_ASSIGN_OR_RETURN(capture_, find_capture());
  TETHER_TRY(allocate());

  damage_ = XDamageCreate(display_, root_, XDamageReportNonEmpty);
  repair_region_ = XFixesCreateRegion(display_, nullptr, 0);
  XFixesSelectCursorInput(display_, root_, XFixesDisplayCursorNotifyMask);
  if (randr_event_base_ >= 0) {
    XRRSelectInput(display_, root_,
                   RRScreenChangeNotifyMask | RRCrtcChangeNotifyMask | RROutputChangeNotifyMask);
  }
  return grab_all();
}

Result<Rect> X11FrameSource::find_capture() {
  const Rect root = root_area(display_);
  if (monitor_.empty()) return root;
  TETHER_ASSIGN_OR_RETURN(std::vector<Monitor> monitors, list_monitors(display_));
  const Monitor* m = find_monitor(monitors, monitor_);
  if (m == nullptr) {
    std::string names;
    for (const Monitor& each : monitors) names += (names.empty() ? "" : ", ") + each.name;
    return make_error(Errc::kNotFound,
                      "no monitor named '" + monitor_ + "' (there are: " + names + ")");
  }
  const Rect area = intersect(m->area, root);
  if (area.empty()) {
    return make_error(Errc::kNotFound, "monitor '" + monitor_ + "' lies outside the screen");
  }
  return area;
}

Result<void> X11FrameSource::allocate() {
  const std::size_t bytes =
      static_cast<std::size_t>(capture_.width) * capture_.height * (layout_.bits_per_pixel / 8);
  previous_framebuffer_ = std::move(framebuffer_);
  framebuffer_.reset(new char[bytes]());
  release_shm();
  if (!use_shm_) return ok_status();
  // Room for a grab of the whole capture; smaller grabs use the start of the segment.
  const int id = shmget(IPC_PRIVATE, bytes + 4096, IPC_CREAT | 0600);
  if (id < 0) {
    use_shm_ = false;  // e.g. no SysV shared memory in this container: plain XGetImage
    return ok_status();
  }
  void* addr = shmat(id, nullptr, 0);
  if (reinterpret_cast<std::intptr_t>(addr) == -1) {  // shmat's (void*)-1
    shmctl(id, IPC_RMID, nullptr);
    use_shm_ = false;
    return ok_status();
  }
  shm_.shmid = id;
  shm_.shmaddr = static_cast<char*>(addr);
  shm_.readOnly = False;
  const unsigned long errors = x_error_count();
  XShmAttach(display_, &shm_);
  XSync(display_, False);
  // Once both sides are attached the segment can be marked for removal: it then goes away
  // with us however we end, even by SIGKILL.
  shmctl(id, IPC_RMID, nullptr);
  if (x_error_count() != errors) {
    // The server cannot reach our memory (another host or user namespace).
    shmdt(shm_.shmaddr);
    shm_ = XShmSegmentInfo{};
    use_shm_ = false;
    return ok_status();
  }
  shm_attached_ = true;
  return ok_status();
}

void X11FrameSource::release_shm() noexcept {
  if (shm_attached_) {
    XShmDetach(display_, &shm_);
    XSync(display_, False);
    shm_attached_ = false;
  }
  if (shm_.shmaddr != nullptr) {
    shmdt(shm_.shmaddr);
    shm_ = XShmSegmentInfo{};
  }
}

Result<void> X11FrameSource::grab(const Rect& local, std::vector<Rect>* changed) {
  if (local.empty()) return ok_status();
  const int bpp = layout_.bits_per_pixel / 8;
  const std::size_t fb_stride = static_cast<std::size_t>(capture_.width) * bpp;
  const int root_x = capture_.x + local.x;
  const int root_y = capture_.y + local.y;
  XImage* image = nullptr;
  const unsigned long errors = x_error_count();
  if (shm_attached_) {
    // A header over the shared segment: the server writes the rectangle into its start.
    image = XShmCreateImage(display_, visual_, static_cast<unsigned>(depth_), ZPixmap, shm_.shmaddr,
                            &shm_, static_cast<unsigned>(local.width),
                            static_cast<unsigned>(local.height));
    if (image == nullptr) return make_error(Errc::kInternal, "XShmCreateImage failed");
    if (!XShmGetImage(display_, root_, image, root_x, root_y, AllPlanes)) {
      XDestroyImage(image);
      return make_error(Errc::kIo, "XShmGetImage failed");
    }
  } else {
    image = XGetImage(display_, root_, root_x, root_y, static_cast<unsigned>(local.width),
                      static_cast<unsigned>(local.height), AllPlanes, ZPixmap);
    XSync(display_, False);
    if (image == nullptr) return make_error(Errc::kIo, "XGetImage failed: " + last_x_error());
  }
  if (x_error_count() != errors || image->bits_per_pixel != layout_.bits_per_pixel) {
    // A grab racing a screen resize: the next RandR event brings the new geometry.
    XDestroyImage(image);
    return ok_status();
  }
  // The pixels of (x, y) in the framebuffer and in the grabbed image.
  const auto fb_at = [&](int x, int y) {
    return framebuffer_.get() + static_cast<std::size_t>(y) * fb_stride +
           static_cast<std::size_t>(x) * bpp;
  };
  const auto image_at = [&](int x, int y) {
    return image->data + static_cast<std::size_t>(y - local.y) * image->bytes_per_line +
           static_cast<std::size_t>(x - local.x) * bpp;
  };
  if (changed == nullptr) {
    const std::size_t row_bytes = static_cast<std::size_t>(local.width) * bpp;
    for (int y = local.y; y < local.y + local.height; ++y) {
      std::memcpy(fb_at(local.x, y), image_at(local.x, y), row_bytes);
    }
  } else {
    // Damage says where X drew, not what changed: a scrolling terminal damages its whole
    // window though most of it (the blank right-hand side) stays the same. Only the tiles
    // whose pixels differ are copied and reported, runs of them per row of tiles.
    const int right = local.x + local.width;
    const int bottom = local.y + local.height;
    for (int ty = local.y / kTile * kTile; ty < bottom; ty += kTile) {
      const int y0 = std::max(ty, local.y);
      const int y1 = std::min(ty + kTile, bottom);
      Rect run;
      for (int tx = local.x / kTile * kTile; tx < right; tx += kTile) {
        const int x0 = std::max(tx, local.x);
        const int x1 = std::min(tx + kTile, right);
        const std::size_t bytes = static_cast<std::size_t>(x1 - x0) * bpp;
        int y = y0;
        while (y < y1 && std::memcmp(fb_at(x0, y), image_at(x0, y), bytes) == 0) ++y;
        if (y == y1) {  // the same pixels
          if (!run.empty()) changed->push_back(run);
          run = Rect{};
          continue;
        }
        for (; y < y1; ++y) std::memcpy(fb_at(x0, y), image_at(x0, y), bytes);
        if (run.empty()) {
          run = Rect{x0, y0, x1 - x0, y1 - y0};
        } else {
          run.width = x1 - run.x;
        }
      }
      if (!run.empty()) changed->push_back(run);
    }
  }
  XDestroyImage(image);  // for a shared memory image this frees only the header
  return ok_status();
}

Result<void> X11FrameSource::grab_all() {
  damage_pending_ = false;
  if (damage_ != 0) XDamageSubtract(display_, damage_, None, None);
  return grab(Rect{0, 0, capture_.width, capture_.height}, nullptr);
}

Result<std::vector<Rect>> X11FrameSource::grab_damage() {
  damage_pending_ = false;
  // Move the accumulated damage into our region and reset it: the next drawing sends a
  // new DamageNotify (ReportNonEmpty).
  XDamageSubtract(display_, damage_, None, repair_region_);
  int count = 0;
  XRectangle* rects = XFixesFetchRegion(display_, repair_region_, &count);
  std::vector<Rect> damaged;
  damaged.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    damaged.push_back(Rect{rects[i].x, rects[i].y, rects[i].width, rects[i].height});
  }
  if (rects != nullptr) XFree(rects);
  std::vector<Rect> changed;
  for (const Rect& r : plan_grabs(damaged, capture_, kMaxGrabRects)) TETHER_TRY(grab(r, &changed));
  return changed;
}

X11FrameSource::EventKind X11FrameSource::handle_event(XEvent& event) {
  if (event.type == damage_event_base_ + XDamageNotify) {
    damage_pending_ = true;
    return EventKind::kDamage;
  }
  if (event.type == fixes_event_base_ + XFixesCursorNotify) return EventKind::kCursor;
  if (randr_event_base_ >= 0 && (event.type == randr_event_base_ + RRScreenChangeNotify ||
                                 event.type == randr_event_base_ + RRNotify)) {
    XRRUpdateConfiguration(&event);
    return EventKind::kGeometry;
  }
  return EventKind::kNotMine;
}

Result<bool> X11FrameSource::refresh_geometry() {
  TETHER_ASSIGN_OR_RETURN(Rect area, find_capture());
  const bool resized = area.width != capture_.width || area.height != capture_.height;
  capture_ = area;
  if (resized) TETHER_TRY(allocate());
  TETHER_TRY(grab_all());
  return resized;
}

Result<CursorImage> X11FrameSource::cursor_image() {
  const unsigned long errors = x_error_count();
  XFixesCursorImage* image = XFixesGetCursorImage(display_);
  if (image == nullptr) {
    XSync(display_, False);
    image = XFixesGetCursorImage(display_);
  }
  if (image == nullptr) {
    return make_error(Errc::kIo, "XFixesGetCursorImage failed" +
                                     (x_error_count() != errors ? ": " + last_x_error() : ""));
  }
  CursorImage out;
  out.width = image->width;
  out.height = image->height;
  out.xhot = image->xhot;
  out.yhot = image->yhot;
  const std::size_t n = static_cast<std::size_t>(image->width) * image->height;
  out.argb.resize(n);
  // XFixes hands 32-bit ARGB values in `unsigned long`s (64 bits on LP64).
  for (std::size_t i = 0; i < n; ++i) out.argb[i] = static_cast<std::uint32_t>(image->pixels[i]);
  XFree(image);
  return out;
}

}  // namespace tether::vnc
