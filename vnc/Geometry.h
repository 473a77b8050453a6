// Rectangles and monitors: what part of the X screen tether-vnc shows and how viewer
// coordinates map back onto it. Pure functions, no X.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tether::vnc {

struct Rect {
  int x = 0;
  int y = 0;
  int width = 0;
  int height = 0;

  [[nodiscard]] bool empty() const noexcept { return width <= 0 || height <= 0; }
  bool operator==(const Rect&) const = default;
};

struct Point {
  int x = 0;
  int y = 0;
  bool operator==(const Point&) const = default;
};

// The overlap of two rectangles; an empty Rect (all zero) when they do not overlap.
[[nodiscard]] Rect intersect(const Rect& a, const Rect& b) noexcept;

// The smallest rectangle holding both (an empty one does not count).
[[nodiscard]] Rect bounding_box(const Rect& a, const Rect& b) noexcept;

// A damaged rectangle in root-window coordinates, clipped to the captured area and moved
// into its coordinates (the framebuffer's); empty when it lies outside.
[[nodiscard]] Rect to_capture_coords(const Rect& root_rect, const Rect& capture) noexcept;

// A viewer's pointer position (framebuffer coordinates, untrusted) as root-window
// coordinates, clamped into the captured area so a viewer never reaches another monitor.
[[nodiscard]] Point to_root_coords(int x, int y, const Rect& capture) noexcept;

// Clips every rectangle to the capture (dropping those outside) and, when more than
// max_rects remain, replaces them by their bounding box: one big grab is cheaper than
// hundreds of tiny round trips to the X server.
[[nodiscard]] std::vector<Rect> plan_grabs(const std::vector<Rect>& root_rects, const Rect& capture,
                                           std::size_t max_rects);

// One XRandR monitor (RandR 1.5 "monitors": an output, or a user-defined area).
struct Monitor {
  std::string name;
  Rect area;
  bool primary = false;
};

// "NAME WxH+X+Y", the --list-monitors line.
[[nodiscard]] std::string format_monitor(const Monitor& monitor);

// The monitor called `name`, or nullptr.
[[nodiscard]] const Monitor* find_monitor(const std::vector<Monitor>& monitors,
                                          std::string_view name) noexcept;

}  // namespace tether::vnc
