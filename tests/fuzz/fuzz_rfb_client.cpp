// RFB client messages (key, pointer, cut text in Latin-1 and the extended clipboard's UTF-8,
// set-encodings, set-pixel-format, update requests) through tether-vnc's own libvncserver
// glue, the way libvncserver's upstream fuzz_server drives the library: a real RfbServer
// (our screen setup, hooks and handlers) serves one end of a socketpair attached with
// rfbNewClient, the fuzzer's bytes wait on the other end, and process() runs until the
// viewer is gone.
//
// VncSession wires the handlers to X11InputInjector and X11Clipboard, which need an X
// display; here the handlers go to a fake X side that does what those do without Xlib,
// through the same pure pieces (KeyPlan's plan_shift, Geometry's to_root_coords, TextCodec,
// the clipboard's size cap) and checks what must hold whatever the viewer sends: pointer
// positions land on the captured monitor, nothing at all reaches X in view-only mode, and
// clipboard text going back to the viewer converts to Latin-1 and back consistently.
//
// The first byte picks the session's settings: bit 0 view-only, bit 1 "raw" (the rest is
// the whole byte stream from the protocol version on; otherwise a 3.8 handshake with
// security type None and a shared ClientInit comes first), bit 2 a 16-bit framebuffer,
// bit 3 a framebuffer change (NewFBSize) after the first message, bits 4-7 the default JPEG
// quality (10-15: none).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/Log.h"
#include "vnc/Geometry.h"
#include "vnc/KeyPlan.h"
#include "vnc/RfbServer.h"
#include "vnc/TextCodec.h"

using namespace tether;
using namespace tether::vnc;

namespace {

constexpr std::size_t kClipboardMax = 4096;  // small, so the cap is reached
constexpr unsigned kShiftL = 0xffe1;         // XK_Shift_L
constexpr unsigned kShiftR = 0xffe2;         // XK_Shift_R

// The X side of a session without X: a keymap where letters have their capital on the
// shifted level, digits a symbol, everything else one keysym on both levels.
class FakeX {
 public:
  FakeX(bool view_only, Rect capture) : view_only_(view_only), capture_(capture) {}

  void key(bool down, std::uint32_t keysym) {
    if (view_only_) std::abort();
    if (keysym == kShiftL || keysym == kShiftR) shift_down_ = down;
    if (!down) {
      pressed_.erase(keysym);
      return;
    }
    std::uint32_t level0 = keysym;
    std::uint32_t level1 = keysym;
    if (keysym >= 'a' && keysym <= 'z') level1 = keysym - 'a' + 'A';
    if (keysym >= 'A' && keysym <= 'Z') level0 = keysym - 'A' + 'a';
    if (keysym >= '0' && keysym <= '9') level1 = ")!@#$%^&*("[keysym - '0'];
    const ShiftAction action = plan_shift(keysym, level0, level1, shift_down_);
    // Shift is pressed only to reach the shifted level, released only to reach the plain one.
    if (action == ShiftAction::kPress && (shift_down_ || keysym != level1)) std::abort();
    if (action == ShiftAction::kRelease && (!shift_down_ || keysym != level0)) std::abort();
    pressed_[keysym] = true;
    if (pressed_.size() > 1u << 20) std::abort();
  }

  void pointer(int mask, int x, int y) {
    if (view_only_) std::abort();
    const Point at = to_root_coords(x, y, capture_);
    if (at.x < capture_.x || at.x >= capture_.x + capture_.width || at.y < capture_.y ||
        at.y >= capture_.y + capture_.height) {
      std::abort();  // a viewer must never reach beyond the shadowed monitor
    }
    buttons_ = mask & 0x7f;
  }

  void cut_text(std::string utf8) {
    if (view_only_) std::abort();
    if (utf8.size() > kClipboardMax) return;  // X11Clipboard ignores text above its cap
    // What X would then hand back to the viewer: sent after process() returns, as the
    // clipboard's callback does from the X event loop.
    echo_ = std::move(utf8);
  }

  std::string take_echo() { return std::exchange(echo_, std::string()); }

 private:
  bool view_only_;
  Rect capture_;
  bool shift_down_ = false;
  int buttons_ = 0;
  std::map<std::uint32_t, bool> pressed_;
  std::string echo_;
};

void check_codec(const std::string& utf8) {
  const std::string latin1 = utf8_to_latin1(utf8);
  if (latin1.size() > utf8.size()) std::abort();
  // Latin-1 → UTF-8 → Latin-1 is lossless.
  if (utf8_to_latin1(latin1_to_utf8(latin1)) != latin1) std::abort();
  const std::string_view prefix = utf8_prefix(utf8, 16);
  if (prefix.size() > 16 || utf8.compare(0, prefix.size(), prefix) != 0) std::abort();
}

PixelLayout layout_for(bool sixteen) {
  PixelLayout layout;
  if (sixteen) {
    layout.bits_per_pixel = 16;
    layout.depth = 16;
    layout.red_mask = 0xf800;
    layout.green_mask = 0x07e0;
    layout.blue_mask = 0x001f;
  }
  return layout;
}

std::vector<char> pattern(int width, int height, int bytes) {
  std::vector<char> pixels(static_cast<std::size_t>(width) * height * bytes);
  for (std::size_t i = 0; i < pixels.size(); ++i) {
    pixels[i] = static_cast<char>((i * 7) ^ (i >> 5));
  }
  return pixels;
}

// Version 3.8, security type None chosen, ClientInit "shared".
constexpr char kHandshake[] = "RFB 003.008\n\x01\x01";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool once = [] {
    log::set_level(log::Level::kError);
    route_libvncserver_logs();
    return true;
  }();
  (void)once;
  if (size == 0) return 0;
  const unsigned flags = data[0];
  const bool view_only = (flags & 1) != 0;
  const bool raw = (flags & 2) != 0;
  const bool sixteen = (flags & 4) != 0;
  const bool resize = (flags & 8) != 0;
  const int quality = static_cast<int>(flags >> 4) <= 9 ? static_cast<int>(flags >> 4) : -1;

  std::string stream = raw ? std::string() : std::string(kHandshake, sizeof kHandshake - 1);
  stream.append(reinterpret_cast<const char*>(data + 1), size - 1);

  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  const int viewer = fds[0];
  const int buffer = 4 * 1024 * 1024;
  ::setsockopt(viewer, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer);
  ::setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
  ::fcntl(viewer, F_SETFL, O_NONBLOCK);
  // Everything is written (what fits) before the server reads, and the write side is shut
  // after it: the server never waits for bytes that will not come.
  std::size_t written = 0;
  while (written < stream.size()) {
    const ssize_t n = ::send(viewer, stream.data() + written, stream.size() - written, 0);
    if (n <= 0) break;
    written += static_cast<std::size_t>(n);
  }
  ::shutdown(viewer, SHUT_WR);

  const int width = 32;
  const int height = 24;
  const PixelLayout layout = layout_for(sixteen);
  std::vector<char> pixels = pattern(width, height, layout.bits_per_pixel / 8);
  std::vector<char> resized = pattern(40, 30, 4);
  FakeX x(view_only, Rect{100, 50, width, height});

  RfbServer::Settings settings;
  settings.desktop_name = "fuzz:0";
  settings.jpeg_quality = quality;
  settings.view_only = view_only;
  RfbServer::Handlers handlers;
  handlers.key = [&x](bool down, std::uint32_t keysym) { x.key(down, keysym); };
  handlers.pointer = [&x](int mask, int px, int py) { x.pointer(mask, px, py); };
  handlers.cut_text = [&x](std::string text) { x.cut_text(std::move(text)); };
  auto server =
      RfbServer::create(settings, std::move(handlers), pixels.data(), width, height, layout);
  if (!server.ok()) std::abort();
  CursorImage cursor;
  cursor.width = 4;
  cursor.height = 4;
  cursor.xhot = 1;
  cursor.yhot = 1;
  cursor.argb.assign(16, 0xff102030u);
  cursor.argb[5] = 0x00000000u;
  (*server)->set_cursor(cursor);

  if ((*server)->attach(fds[1]).ok()) {
    char sink[64 * 1024];
    bool changed = false;
    // Each turn handles at most one message; the bound only stops a server that would
    // neither read nor notice the end of the stream.
    const std::size_t turns = stream.size() + 64;
    for (std::size_t turn = 0; turn < turns && !(*server)->client_gone(); ++turn) {
      (*server)->process();
      while (::recv(viewer, sink, sizeof sink, 0) > 0) {
      }
      if (const std::string echo = x.take_echo(); !echo.empty()) {
        check_codec(echo);
        (*server)->send_cut_text(echo);
      }
      if (resize && !changed) {
        (*server)->replace_framebuffer(resized.data(), 40, 30, layout_for(false));
        changed = true;
      }
      (*server)->mark_modified(changed ? Rect{0, 0, 40, 30} : Rect{0, 0, width, height});
    }
  }
  server->reset();
  ::close(viewer);
  return 0;
}
