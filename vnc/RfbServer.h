// RAII around libvncserver's rfbScreenInfo for exactly one viewer on an already connected
// socket. No listening socket is ever opened (no RFB port, no IPv6 port, no HTTP server),
// and what 0.9.14 cannot switch off at run time is refused or left inert (see the .cpp).
// The rfbClientPtr belongs to libvncserver: this class only remembers it until the client
// gone hook clears it.
#pragma once

#include <rfb/rfb.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/Result.h"
#include "vnc/Geometry.h"

namespace tether::vnc {

// How the framebuffer's pixels are laid out (the X image's format, copied unchanged).
struct PixelLayout {
  int bits_per_pixel = 32;  // 16 or 32
  int depth = 24;
  std::uint32_t red_mask = 0xff0000;
  std::uint32_t green_mask = 0x00ff00;
  std::uint32_t blue_mask = 0x0000ff;
  bool big_endian = false;
};

// A cursor image as XFixes gives it: premultiplied ARGB, one 32-bit value per pixel.
struct CursorImage {
  int width = 0;
  int height = 0;
  int xhot = 0;
  int yhot = 0;
  std::vector<std::uint32_t> argb;
};

class RfbServer {
 public:
  struct Settings {
    std::string desktop_name;
    int jpeg_quality = 6;  // Tight JPEG quality (0-9) unless the viewer asks for one
    bool view_only = false;
  };
  // Input from the viewer. Empty handlers are never registered with libvncserver; in
  // view-only mode none are, and the client is marked view-only as well.
  struct Handlers {
    std::function<void(bool down, std::uint32_t keysym)> key;
    std::function<void(int button_mask, int x, int y)> pointer;
    std::function<void(std::string utf8)> cut_text;
  };

  // `pixels` stays the caller's and must live until replaced or the server is destroyed.
  [[nodiscard]] static Result<std::unique_ptr<RfbServer>> create(const Settings& settings,
                                                                 Handlers handlers, char* pixels,
                                                                 int width, int height,
                                                                 const PixelLayout& layout);
  ~RfbServer();
  RfbServer(const RfbServer&) = delete;
  RfbServer& operator=(const RfbServer&) = delete;

  // Speaks RFB on `fd` (libvncserver owns and closes it from here on, also on failure).
  // Fails when the peer hung up before the handshake or tried to start WebSockets/TLS.
  [[nodiscard]] Result<void> attach(int fd);

  // The client's socket while it is connected, else -1.
  [[nodiscard]] int client_socket() const noexcept;
  // True while the viewer has asked for an update that has not been sent yet: only then is
  // grabbing the screen worth it (one grab per request is the backpressure of a slow viewer).
  [[nodiscard]] bool wants_update() const noexcept;
  // True once the viewer has gone (its socket closed or a protocol error).
  [[nodiscard]] bool client_gone() const noexcept { return gone_; }

  // Reads what the viewer sent and sends updates it asked for; never waits.
  void process();

  // A new framebuffer (size or format changed); the viewer gets a NewFBSize or a full update.
  void replace_framebuffer(char* pixels, int width, int height, const PixelLayout& layout);
  void mark_modified(const Rect& rect);
  void set_cursor(const CursorImage& cursor);
  void send_cut_text(std::string_view utf8);

 private:
  RfbServer(const Settings& settings, Handlers handlers);
  void apply_layout(const PixelLayout& layout);

  static enum rfbNewClientAction on_new_client(rfbClientPtr client);
  static void on_client_gone(rfbClientPtr client);
  static void on_display(rfbClientPtr client);
  static void on_key(rfbBool down, rfbKeySym keysym, rfbClientPtr client);
  static void on_pointer(int button_mask, int x, int y, rfbClientPtr client);
  static void on_cut_text_latin1(char* text, int length, rfbClientPtr client);
  static void on_cut_text_utf8(char* text, int length, rfbClientPtr client);
  static RfbServer* self(rfbClientPtr client) noexcept;

  struct ScreenDeleter {
    void operator()(rfbScreenInfoPtr screen) const noexcept;
  };

  Settings settings_;
  Handlers handlers_;
  std::string desktop_name_;  // screen->desktopName points here
  std::unique_ptr<rfbScreenInfo, ScreenDeleter> screen_;
  rfbClientPtr client_ = nullptr;  // not owned; cleared by on_client_gone
  bool gone_ = false;
  bool refused_ = false;
};

// Routes libvncserver's own log lines (rfbLog, rfbErr) into common/Log at debug/warning.
void route_libvncserver_logs();

}  // namespace tether::vnc
