#include "vnc/RfbServer.h"

// rfbregion.h, unlike rfb.h, has no extern "C" of its own.
extern "C" {
#include <rfb/rfbregion.h>
}

#include <bit>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/Log.h"
#include "vnc/TextCodec.h"

namespace tether::vnc {
namespace {

// libvncserver's own tables (rfbserver.c), which map the 0-9 Tight quality levels to
// libjpeg-turbo quality and chroma subsampling as TigerVNC's server does.
constexpr int kTightToTurboQuality[10] = {15, 29, 41, 42, 62, 77, 79, 86, 92, 100};
constexpr int kTightToTurboSubsampling[10] = {1, 1, 1, 2, 2, 2, 0, 0, 0, 0};

void shift_and_max(std::uint32_t mask, std::uint8_t& shift, std::uint16_t& max) {
  if (mask == 0) {
    shift = 0;
    max = 0;
    return;
  }
  shift = static_cast<std::uint8_t>(std::countr_zero(mask));
  max = static_cast<std::uint16_t>(mask >> shift);
}

__attribute__((format(printf, 1, 0))) std::string format_line(const char* format, va_list args) {
  char line[1024];
  // The analyzer cannot see that every caller va_start()s `args` (a known false positive
  // for va_list parameters).
  (void)std::vsnprintf(line, sizeof line, format,
                       args);  // NOLINT(clang-analyzer-valist.Uninitialized)
  std::string text = std::string("libvncserver: ") + line;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

__attribute__((format(printf, 1, 2))) void log_debug(const char* format, ...) {
  if (log::level() < log::Level::kDebug) return;
  va_list args;
  va_start(args, format);
  const std::string text = format_line(format, args);
  va_end(args);
  log::debug(text);
}

__attribute__((format(printf, 1, 2))) void log_warning(const char* format, ...) {
  va_list args;
  va_start(args, format);
  const std::string text = format_line(format, args);
  va_end(args);
  // rfbNewClient sets TCP_NODELAY on every socket; ours is a socketpair.
  if (text.find("TCP_NODELAY") != std::string::npos) {
    log::debug(text);
    return;
  }
  log::warning(text);
}

}  // namespace

void route_libvncserver_logs() {
  rfbLog = log_debug;
  rfbErr = log_warning;
}

void RfbServer::ScreenDeleter::operator()(rfbScreenInfoPtr screen) const noexcept {
  rfbShutdownServer(screen, TRUE);
  rfbScreenCleanup(screen);
}

RfbServer::RfbServer(const Settings& settings, Handlers handlers)
    : settings_(settings), handlers_(std::move(handlers)) {}

RfbServer::~RfbServer() {
  // Hooks that run during cleanup (client gone) still see a whole object.
  screen_.reset();
}

Result<std::unique_ptr<RfbServer>> RfbServer::create(const Settings& settings, Handlers handlers,
                                                     char* pixels, int width, int height,
                                                     const PixelLayout& layout) {
  if (layout.bits_per_pixel != 16 && layout.bits_per_pixel != 32) {
    return make_error(Errc::kInvalidArgument,
                      "unsupported pixel size " + std::to_string(layout.bits_per_pixel));
  }
  std::unique_ptr<RfbServer> server(new RfbServer(settings, std::move(handlers)));
  const int bytes = layout.bits_per_pixel / 8;
  // argc == nullptr: libvncserver parses no command line of ours.
  rfbScreenInfoPtr screen = rfbGetScreen(nullptr, nullptr, width, height, 8, 3, bytes);
  if (screen == nullptr) return make_error(Errc::kInternal, "rfbGetScreen failed");
  server->screen_.reset(screen);
  screen->screenData = server.get();
  screen->frameBuffer = pixels;
  server->apply_layout(layout);

  server->desktop_name_ = settings.desktop_name;
  screen->desktopName = server->desktop_name_.c_str();

  // No listening sockets at all: no autoprobing, no TCP or IPv6 port, no UDP input, no
  // HTTP server (it starts only with httpDir set), no inetd socket (we attach our fd).
  screen->autoPort = FALSE;
  screen->port = -1;
  screen->ipv6port = -1;
  screen->udpPort = 0;
  screen->httpDir = nullptr;
  screen->httpPort = -1;
  screen->http6Port = -1;
  screen->httpEnableProxyConnect = FALSE;
  // UltraVNC file transfer stays refused (and the TightVNC file transfer extension is never
  // registered); TextChat, single-window, server-input and xvp messages find no hook and do
  // nothing.
  screen->permitFileTransfer = FALSE;
  screen->getFileTransferPermission = nullptr;
  screen->setTextChat = nullptr;
  screen->setSingleWindow = nullptr;
  screen->setServerInput = nullptr;
  screen->xvpHook = nullptr;
  // One viewer per process; a second "shared" connection cannot happen without a listener.
  screen->alwaysShared = FALSE;
  screen->neverShared = TRUE;
  // Send an update as soon as the viewer asks and something changed: the X side already
  // coalesces damage, a further 5 ms wait only adds latency.
  screen->deferUpdateTime = 0;
  screen->deferPtrUpdateTime = 0;
  screen->handleEventsEagerly = FALSE;
  screen->ignoreSIGPIPE = TRUE;
  screen->versionString = nullptr;

  screen->newClientHook = on_new_client;
  screen->displayHook = on_display;
  if (!settings.view_only) {
    if (server->handlers_.key) screen->kbdAddEvent = on_key;
    if (server->handlers_.pointer) screen->ptrAddEvent = on_pointer;
    if (server->handlers_.cut_text) {
      screen->setXCutText = on_cut_text_latin1;
      screen->setXCutTextUTF8 = on_cut_text_utf8;
    }
  }

  rfbInitServer(screen);
  if (screen->listenSock != RFB_INVALID_SOCKET || screen->listen6Sock != RFB_INVALID_SOCKET ||
      screen->httpListenSock != RFB_INVALID_SOCKET) {
    return make_error(Errc::kInternal, "libvncserver opened a listening socket");
  }
  return server;
}

void RfbServer::apply_layout(const PixelLayout& layout) {
  rfbPixelFormat& f = screen_->serverFormat;
  f.bitsPerPixel = static_cast<std::uint8_t>(layout.bits_per_pixel);
  f.depth = static_cast<std::uint8_t>(layout.depth);
  f.bigEndian = layout.big_endian ? 1 : 0;
  f.trueColour = 1;
  shift_and_max(layout.red_mask, f.redShift, f.redMax);
  shift_and_max(layout.green_mask, f.greenShift, f.greenMax);
  shift_and_max(layout.blue_mask, f.blueShift, f.blueMax);
  screen_->bitsPerPixel = layout.bits_per_pixel;
  screen_->depth = layout.depth;
}

Result<void> RfbServer::attach(int fd) {
  // rfbNewClient waits up to 100 ms for the peer to speak first (0.9.14's WebSockets
  // detection, compiled into Debian's build); RFB peers wait for our greeting, so this is
  // a fixed delay, and on_new_client refuses anyone who did start WebSockets or TLS.
  rfbClientPtr client = rfbNewClient(screen_.get(), fd);
  if (client == nullptr) {
    gone_ = true;
    if (refused_) {
      return make_error(Errc::kPermissionDenied,
                        "the viewer started a WebSocket or TLS handshake; refused");
    }
    return make_error(Errc::kUnavailable,
                      "the viewer hung up (or sent garbage) before the RFB handshake");
  }
  return ok_status();
}

int RfbServer::client_socket() const noexcept {
  return client_ != nullptr ? client_->sock : -1;
}

bool RfbServer::wants_update() const noexcept {
  return client_ != nullptr && !sraRgnEmpty(client_->requestedRegion);
}

void RfbServer::process() {
  rfbProcessEvents(screen_.get(), 0);
}

void RfbServer::replace_framebuffer(char* pixels, int width, int height,
                                    const PixelLayout& layout) {
  rfbNewFramebuffer(screen_.get(), pixels, width, height, 8, 3, layout.bits_per_pixel / 8);
  // rfbNewFramebuffer resets the pixel format to its own idea; put ours back and let every
  // client rebuild its translation from it.
  apply_layout(layout);
  rfbClientIteratorPtr it = rfbGetClientIterator(screen_.get());
  while (rfbClientPtr cl = rfbClientIteratorNext(it)) screen_->setTranslateFunction(cl);
  rfbReleaseClientIterator(it);
}

void RfbServer::mark_modified(const Rect& rect) {
  if (rect.empty()) return;
  rfbMarkRectAsModified(screen_.get(), rect.x, rect.y, rect.x + rect.width, rect.y + rect.height);
}

void RfbServer::set_cursor(const CursorImage& image) {
  if (image.width <= 0 || image.height <= 0 ||
      image.argb.size() != static_cast<std::size_t>(image.width) * image.height) {
    return;
  }
  const rfbPixelFormat& f = screen_->serverFormat;
  const int bpp = f.bitsPerPixel / 8;
  const std::size_t pixels = image.argb.size();
  auto* cursor = static_cast<rfbCursor*>(std::calloc(1, sizeof(rfbCursor)));
  auto* rich = static_cast<unsigned char*>(std::calloc(pixels, bpp));
  auto* alpha = static_cast<unsigned char*>(std::calloc(pixels, 1));
  const int mask_row = (image.width + 7) / 8;
  auto* mask = static_cast<unsigned char*>(std::calloc(mask_row, image.height));
  if (cursor == nullptr || rich == nullptr || alpha == nullptr || mask == nullptr) {
    std::free(cursor);
    std::free(rich);
    std::free(alpha);
    std::free(mask);
    return;
  }
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * image.width + x;
      const std::uint32_t p = image.argb[i];
      const std::uint32_t a = p >> 24;
      const std::uint32_t r = (p >> 16) & 0xff;
      const std::uint32_t g = (p >> 8) & 0xff;
      const std::uint32_t b = p & 0xff;
      const std::uint32_t value = ((r * f.redMax / 255) << f.redShift) |
                                  ((g * f.greenMax / 255) << f.greenShift) |
                                  ((b * f.blueMax / 255) << f.blueShift);
      unsigned char* out = rich + i * bpp;
      for (int k = 0; k < bpp; ++k) {
        const int byte = f.bigEndian ? bpp - 1 - k : k;
        out[k] = static_cast<unsigned char>(value >> (8 * byte));
      }
      alpha[i] = static_cast<unsigned char>(a);
      if (a >= 128) mask[y * mask_row + x / 8] |= static_cast<unsigned char>(0x80 >> (x % 8));
    }
  }
  cursor->cleanup = TRUE;
  cursor->cleanupSource = TRUE;
  cursor->cleanupMask = TRUE;
  cursor->cleanupRichSource = TRUE;
  cursor->width = static_cast<unsigned short>(image.width);
  cursor->height = static_cast<unsigned short>(image.height);
  cursor->xhot = static_cast<unsigned short>(image.xhot);
  cursor->yhot = static_cast<unsigned short>(image.yhot);
  cursor->richSource = rich;
  cursor->alphaSource = alpha;
  cursor->alphaPreMultiplied = TRUE;
  cursor->mask = mask;
  // Black on white for viewers that only take two-colour cursors (XCursor encoding);
  // libvncserver derives the bitmap from the rich source with these colours.
  cursor->foreRed = cursor->foreGreen = cursor->foreBlue = 0;
  cursor->backRed = cursor->backGreen = cursor->backBlue = 0xffff;
  rfbMakeXCursorFromRichCursor(screen_.get(), cursor);
  rfbSetCursor(screen_.get(), cursor);  // libvncserver frees it (cleanup) when replaced
}

void RfbServer::send_cut_text(std::string_view utf8) {
  if (client_ == nullptr) return;
  std::string text(utf8);
  std::string latin1 = utf8_to_latin1(utf8);
  // Viewers with the extended clipboard get UTF-8, the others Latin-1.
  rfbSendServerCutTextUTF8(screen_.get(), text.data(), static_cast<int>(text.size()), latin1.data(),
                           static_cast<int>(latin1.size()));
}

RfbServer* RfbServer::self(rfbClientPtr client) noexcept {
  return static_cast<RfbServer*>(client->screen->screenData);
}

enum rfbNewClientAction RfbServer::on_new_client(rfbClientPtr client) {
  RfbServer* server = self(client);
  if (client->wsctx != nullptr || client->sslctx != nullptr) {
    // The peer spoke first with "GET " or a TLS hello. Only RFB is spoken on this fd.
    server->refused_ = true;
    return RFB_CLIENT_REFUSE;
  }
  if (server->client_ != nullptr) return RFB_CLIENT_REFUSE;
  client->viewOnly = server->settings_.view_only ? TRUE : FALSE;
  client->clientGoneHook = on_client_gone;
  server->client_ = client;
  return RFB_CLIENT_ACCEPT;
}

void RfbServer::on_client_gone(rfbClientPtr client) {
  RfbServer* server = self(client);
  if (server->client_ == client) server->client_ = nullptr;
  server->gone_ = true;
}

void RfbServer::on_display(rfbClientPtr client) {
  // Called before each framebuffer update. A viewer that sent no quality pseudo-encoding
  // has tightQualityLevel -1 (libvncserver resets it on every SetEncodings), which would
  // mean lossless Tight; give it our default so Tight uses JPEG for photo-like areas.
  const int q = self(client)->settings_.jpeg_quality;
  if (client->tightQualityLevel == -1 && q >= 0 && q <= 9) {
    client->tightQualityLevel = q;
    client->turboQualityLevel = kTightToTurboQuality[q];
    client->turboSubsampLevel = kTightToTurboSubsampling[q];
  }
}

void RfbServer::on_key(rfbBool down, rfbKeySym keysym, rfbClientPtr client) {
  RfbServer* server = self(client);
  if (server->settings_.view_only || !server->handlers_.key) return;
  server->handlers_.key(down != 0, static_cast<std::uint32_t>(keysym));
}

void RfbServer::on_pointer(int button_mask, int x, int y, rfbClientPtr client) {
  RfbServer* server = self(client);
  // Keeps libvncserver's idea of the cursor position (drawn for viewers without cursor
  // shape support) in step.
  rfbDefaultPtrAddEvent(button_mask, x, y, client);
  if (server->settings_.view_only || !server->handlers_.pointer) return;
  server->handlers_.pointer(button_mask, x, y);
}

void RfbServer::on_cut_text_latin1(char* text, int length, rfbClientPtr client) {
  RfbServer* server = self(client);
  if (server->settings_.view_only || !server->handlers_.cut_text || length < 0) return;
  server->handlers_.cut_text(latin1_to_utf8(std::string_view(text, length)));
}

void RfbServer::on_cut_text_utf8(char* text, int length, rfbClientPtr client) {
  RfbServer* server = self(client);
  if (server->settings_.view_only || !server->handlers_.cut_text || length < 0) return;
  server->handlers_.cut_text(std::string(text, length));
}

}  // namespace tether::vnc
