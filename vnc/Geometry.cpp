#include "vnc/Geometry.h"

#include <algorithm>

namespace tether::vnc {

Rect intersect(const Rect& a, const Rect& b) noexcept {
  if (a.empty() || b.empty()) return {};
  // 64-bit sums: X coordinates are 16-bit, but these values may come from a viewer.
  const long long x1 = std::max<long long>(a.x, b.x);
  const long long y1 = std::max<long long>(a.y, b.y);
  const long long x2 = std::min<long long>(static_cast<long long>(a.x) + a.width,
                                           static_cast<long long>(b.x) + b.width);
  const long long y2 = std::min<long long>(static_cast<long long>(a.y) + a.height,
                                           static_cast<long long>(b.y) + b.height);
  if (x2 <= x1 || y2 <= y1) return {};
  return Rect{static_cast<int>(x1), static_cast<int>(y1), static_cast<int>(x2 - x1),
              static_cast<int>(y2 - y1)};
}

Rect bounding_box(const Rect& a, const Rect& b) noexcept {
  if (a.empty()) return b;
  if (b.empty()) return a;
  const int x1 = std::min(a.x, b.x);
  const int y1 = std::min(a.y, b.y);
  const int x2 = std::max(a.x + a.width, b.x + b.width);
  const int y2 = std::max(a.y + a.height, b.y + b.height);
  return Rect{x1, y1, x2 - x1, y2 - y1};
}

Rect to_capture_coords(const Rect& root_rect, const Rect& capture) noexcept {
  Rect clipped = intersect(root_rect, capture);
  if (clipped.empty()) return {};
  clipped.x -= capture.x;
  clipped.y -= capture.y;
  return clipped;
}

Point to_root_coords(int x, int y, const Rect& capture) noexcept {
  const int max_x = capture.width > 0 ? capture.width - 1 : 0;
  const int max_y = capture.height > 0 ? capture.height - 1 : 0;
  return Point{capture.x + std::clamp(x, 0, max_x), capture.y + std::clamp(y, 0, max_y)};
}

std::vector<Rect> plan_grabs(const std::vector<Rect>& root_rects, const Rect& capture,
                             std::size_t max_rects) {
  std::vector<Rect> out;
  Rect box;
  for (const Rect& r : root_rects) {
    const Rect local = to_capture_coords(r, capture);
    if (local.empty()) continue;
    out.push_back(local);
    box = bounding_box(box, local);
  }
  if (out.size() > max_rects) return {box};
  return out;
}

std::string format_monitor(const Monitor& monitor) {
  const Rect& a = monitor.area;
  return monitor.name + " " + std::to_string(a.width) + "x" + std::to_string(a.height) +
         (a.x < 0 ? "" : "+") + std::to_string(a.x) + (a.y < 0 ? "" : "+") + std::to_string(a.y);
}

const Monitor* find_monitor(const std::vector<Monitor>& monitors, std::string_view name) noexcept {
  for (const Monitor& m : monitors) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

}  // namespace tether::vnc
