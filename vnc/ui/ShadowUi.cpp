// tether-shadow-ui: the consent prompt and the "your screen is shared" indicator the agent
// shows on the device's display. Plain Xlib with core fonts, so it works on a bare X server
// (Xvfb, no window manager, no toolkit). It is an X client of the session's user: the agent
// runs it as that user, as a separate process, and reads the answer from the exit code.
//
//   tether-shadow-ui prompt --display :D [--xauthority F] --admin NAME --timeout SECONDS
//                           --default allow|deny [--view-only]
//     exit 0 allow, 10 deny, 11 timed out (the agent applies the default), 1 error, 2 usage
//   tether-shadow-ui indicator --display :D [--xauthority F] --admin NAME [--view-only]
//     runs until killed; exit 0 when the user clicks "Stop sharing", 1 error, 2 usage
//
// Geometry is fixed and documented (docs/configuration.md) so tests can click it:
//   prompt    460x150 at (40,40): Allow button centre (120,115), Deny centre (340,115)
//   indicator 460x24 at the top centre: Stop sharing centre (401,12)
// Enter does not accept (a keystroke meant for another window must never grant access);
// Escape denies.

// First: Xlib #defines Status, which common/Result.h declares.
#include "vnc/Xauthority.h"

#include <X11/Xatom.h>
#include <X11/Xlib.h>
#include <X11/Xutil.h>
#include <X11/keysym.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr int kExitAllow = 0;
constexpr int kExitDeny = 10;
constexpr int kExitTimeout = 11;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

constexpr std::size_t kMaxNameChars = 40;

struct Rect {
  int x, y, w, h;
  [[nodiscard]] bool contains(int px, int py) const {
    return px >= x && px < x + w && py >= y && py < y + h;
  }
};

constexpr int kPromptWidth = 460;
constexpr int kPromptHeight = 150;
constexpr Rect kAllowButton{60, 100, 120, 30};  // centre (120,115)
constexpr Rect kDenyButton{280, 100, 120, 30};  // centre (340,115)
constexpr int kBarWidth = 460;
constexpr int kBarHeight = 24;
constexpr Rect kStopButton{350, 2, 102, 20};  // centre (401,12)

struct Options {
  std::string mode;
  std::string display;
  std::vector<std::string> xauthority;  // files to try in order
  std::string admin;
  long timeout_s = 0;
  std::string default_answer;
  bool view_only = false;
};

void usage() {
  std::fputs(
      "usage: tether-shadow-ui prompt --display :D [--xauthority FILE] --admin NAME\n"
      "                               --timeout SECONDS --default allow|deny [--view-only]\n"
      "       tether-shadow-ui indicator --display :D [--xauthority FILE] --admin NAME "
      "[--view-only]\n",
      stderr);
}

bool parse(int argc, char** argv, Options& o) {
  if (argc < 2) return false;
  o.mode = argv[1];
  if (o.mode != "prompt" && o.mode != "indicator") return false;
  bool have_admin = false;
  for (int i = 2; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    if (a == "--display") {
      if (!value(o.display)) return false;
    } else if (a == "--xauthority") {
      std::string file;
      if (!value(file) || file.empty()) return false;
      o.xauthority.push_back(file);
    } else if (a == "--admin") {
      if (!value(o.admin)) return false;
      have_admin = true;
    } else if (a == "--timeout") {
      std::string t;
      if (!value(t)) return false;
      char* end = nullptr;
      o.timeout_s = std::strtol(t.c_str(), &end, 10);
      if (end == t.c_str() || *end != '\0' || o.timeout_s < 1 || o.timeout_s > 3600) return false;
    } else if (a == "--default") {
      if (!value(o.default_answer)) return false;
      if (o.default_answer != "allow" && o.default_answer != "deny") return false;
    } else if (a == "--view-only") {
      o.view_only = true;
    } else {
      return false;
    }
  }
  if (o.display.empty() || !have_admin) return false;
  if (o.mode == "prompt" && (o.timeout_s == 0 || o.default_answer.empty())) return false;
  return true;
}

// UTF-8 to code points; anything malformed becomes U+FFFD.
std::vector<char32_t> decode_utf8(std::string_view s) {
  std::vector<char32_t> out;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    int extra = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (extra < 0) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    char32_t cp = extra == 0 ? c : c & (0x3F >> extra);
    bool ok = true;
    for (int k = 1; k <= extra; ++k) {
      if (i + k >= s.size() || (static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    }
    if (!ok) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += static_cast<std::size_t>(extra) + 1;
  }
  return out;
}

// The admin's name as the device's user sees it: control characters replaced, truncated.
std::vector<char32_t> display_name(std::string_view admin) {
  auto cps = decode_utf8(admin);
  for (auto& c : cps) {
    if (c < 0x20 || c == 0x7F || (c >= 0x80 && c < 0xA0)) c = '?';
  }
  if (cps.size() > kMaxNameChars) {
    cps.resize(kMaxNameChars - 3);
    cps.insert(cps.end(), {'.', '.', '.'});
  }
  if (cps.empty()) cps = {'?'};
  return cps;
}

std::vector<char32_t> ascii(std::string_view s) {
  return {s.begin(), s.end()};
}

std::vector<char32_t> concat(std::initializer_list<std::vector<char32_t>> parts) {
  std::vector<char32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

class Ui {
 public:
  explicit Ui(Display* dpy) : dpy_(dpy), screen_(DefaultScreen(dpy)) {}
  ~Ui() {
    if (gc_ != nullptr) XFreeGC(dpy_, gc_);
    if (font_ != nullptr) XFreeFont(dpy_, font_);
    XCloseDisplay(dpy_);
  }
  Ui(const Ui&) = delete;
  Ui& operator=(const Ui&) = delete;

  bool load_font() {
    // A Unicode core font when the server has one, else the always-present "fixed"
    // (Latin-1; other characters are drawn as '?').
    font_ = XLoadQueryFont(dpy_, "-misc-fixed-medium-r-*--13-*-*-*-*-*-iso10646-1");
    wide_ = font_ != nullptr;
    if (font_ == nullptr) font_ = XLoadQueryFont(dpy_, "fixed");
    return font_ != nullptr;
  }

  unsigned long color(const char* name, unsigned long fallback) {
    XColor c, exact;
    if (XAllocNamedColor(dpy_, DefaultColormap(dpy_, screen_), name, &c, &exact) != 0) {
      return c.pixel;
    }
    return fallback;
  }

  Window create(int x, int y, int w, int h, bool override_redirect, const char* title,
                const char* instance) {
    XSetWindowAttributes attrs{};
    attrs.background_pixel = color("#e8e8e8", WhitePixel(dpy_, screen_));
    attrs.border_pixel = BlackPixel(dpy_, screen_);
    attrs.override_redirect = override_redirect ? True : False;
    attrs.event_mask = ExposureMask | ButtonPressMask | ButtonReleaseMask | KeyPressMask |
                       StructureNotifyMask | VisibilityChangeMask;
    win_ = XCreateWindow(dpy_, RootWindow(dpy_, screen_), x, y, static_cast<unsigned>(w),
                         static_cast<unsigned>(h), 1, CopyFromParent, InputOutput, CopyFromParent,
                         CWBackPixel | CWBorderPixel | CWOverrideRedirect | CWEventMask, &attrs);
    XStoreName(dpy_, win_, title);
    const Atom utf8 = XInternAtom(dpy_, "UTF8_STRING", False);
    XChangeProperty(dpy_, win_, XInternAtom(dpy_, "_NET_WM_NAME", False), utf8, 8, PropModeReplace,
                    reinterpret_cast<const unsigned char*>(title),
                    static_cast<int>(std::strlen(title)));
    XClassHint hint{};
    std::string inst(instance);
    std::string cls("tether-shadow-ui");
    hint.res_name = inst.data();
    hint.res_class = cls.data();
    XSetClassHint(dpy_, win_, &hint);
    // A fixed size, above other windows, when a window manager is present.
    XSizeHints size{};
    size.flags = PPosition | PSize | PMinSize | PMaxSize;
    size.x = x;
    size.y = y;
    size.width = size.min_width = size.max_width = w;
    size.height = size.min_height = size.max_height = h;
    XSetWMNormalHints(dpy_, win_, &size);
    const Atom above = XInternAtom(dpy_, "_NET_WM_STATE_ABOVE", False);
    XChangeProperty(dpy_, win_, XInternAtom(dpy_, "_NET_WM_STATE", False), XA_ATOM, 32,
                    PropModeReplace, reinterpret_cast<const unsigned char*>(&above), 1);
    wm_delete_ = XInternAtom(dpy_, "WM_DELETE_WINDOW", False);
    XSetWMProtocols(dpy_, win_, &wm_delete_, 1);
    XGCValues gcv{};
    gcv.font = font_->fid;
    gc_ = XCreateGC(dpy_, win_, GCFont, &gcv);
    XMapRaised(dpy_, win_);
    XFlush(dpy_);
    return win_;
  }

  void text(int x, int y, const std::vector<char32_t>& s, unsigned long pixel) {
    XSetForeground(dpy_, gc_, pixel);
    if (wide_) {
      std::vector<XChar2b> chars;
      for (char32_t c : s) {
        const char32_t v = c > 0xFFFF ? U'?' : c;
        chars.push_back(
            XChar2b{static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v & 0xFF)});
      }
      XDrawString16(dpy_, win_, gc_, x, y, chars.data(), static_cast<int>(chars.size()));
    } else {
      std::string bytes;
      for (char32_t c : s) bytes.push_back(c > 0xFF ? '?' : static_cast<char>(c));
      XDrawString(dpy_, win_, gc_, x, y, bytes.data(), static_cast<int>(bytes.size()));
    }
  }

  int text_width(const std::string& s) const {
    return XTextWidth(font_, s.data(), static_cast<int>(s.size()));
  }

  void button(const Rect& r, const char* label, unsigned long fill) {
    XSetForeground(dpy_, gc_, fill);
    XFillRectangle(dpy_, win_, gc_, r.x, r.y, static_cast<unsigned>(r.w),
                   static_cast<unsigned>(r.h));
    XSetForeground(dpy_, gc_, BlackPixel(dpy_, screen_));
    XDrawRectangle(dpy_, win_, gc_, r.x, r.y, static_cast<unsigned>(r.w - 1),
                   static_cast<unsigned>(r.h - 1));
    const int tw = text_width(label);
    const int ty = r.y + (r.h + font_->ascent - font_->descent) / 2;
    text(r.x + (r.w - tw) / 2, ty, ascii(label), BlackPixel(dpy_, screen_));
  }

  void clear() { XClearWindow(dpy_, win_); }
  void flush() { XFlush(dpy_); }

  Display* dpy() const { return dpy_; }
  int screen() const { return screen_; }
  Window win() const { return win_; }
  Atom wm_delete() const { return wm_delete_; }

 private:
  Display* dpy_;
  int screen_;
  Window win_ = 0;
  XFontStruct* font_ = nullptr;
  bool wide_ = false;
  GC gc_ = nullptr;
  Atom wm_delete_ = 0;
};

double now_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Waits for X events up to `ms`; false when the connection broke.
bool wait_events(Display* dpy, int ms) {
  if (XPending(dpy) > 0) return true;
  pollfd p{ConnectionNumber(dpy), POLLIN, 0};
  const int n = poll(&p, 1, ms);
  if (n > 0 && (p.revents & (POLLERR | POLLHUP)) != 0) return false;
  return true;
}

int run_prompt(Ui& ui, const Options& o) {
  const auto name = display_name(o.admin);
  ui.create(40, 40, kPromptWidth, kPromptHeight, false, "Tether: screen sharing request",
            "tether-shadow-prompt");
  const unsigned long black = BlackPixel(ui.dpy(), ui.screen());
  const unsigned long allow_fill = ui.color("#9fd89f", WhitePixel(ui.dpy(), ui.screen()));
  const unsigned long deny_fill = ui.color("#f0a0a0", WhitePixel(ui.dpy(), ui.screen()));
  const double deadline = now_s() + static_cast<double>(o.timeout_s);
  long shown = -1;
  int pressed = 0;  // 1 Allow, 2 Deny: the button the press started on
  bool exposed = false;

  auto draw = [&](long remaining) {
    ui.clear();
    ui.text(16, 26,
            concat({name, ascii(o.view_only ? " wants to see your screen"
                                            : " wants to see and control your screen")}),
            black);
    ui.text(16, 50, ascii("Tether remote support: allow screen sharing?"), black);
    const std::string when = "No answer in " + std::to_string(remaining) + " s: " +
                             (o.default_answer == "allow" ? "sharing starts" : "request denied");
    ui.text(16, 74, ascii(when), black);
    ui.button(kAllowButton, "Allow", allow_fill);
    ui.button(kDenyButton, "Deny", deny_fill);
    ui.flush();
  };

  for (;;) {
    const double left = deadline - now_s();
    if (left <= 0) return kExitTimeout;
    const long remaining = static_cast<long>(left + 0.999);
    if (exposed && remaining != shown) {
      shown = remaining;
      draw(remaining);
    }
    const double to_next = left - static_cast<double>(remaining - 1);
    if (!wait_events(ui.dpy(), static_cast<int>(to_next * 1000) + 1)) return kExitError;
    while (XPending(ui.dpy()) > 0) {
      XEvent ev;
      XNextEvent(ui.dpy(), &ev);
      switch (ev.type) {
        case Expose:
          if (ev.xexpose.count == 0) {
            exposed = true;
            shown = -1;
          }
          break;
        case MapNotify:
          // No window manager gives focus on a bare X server; take it so Escape works.
          XSetInputFocus(ui.dpy(), ui.win(), RevertToParent, CurrentTime);
          break;
        case VisibilityNotify:
          if (ev.xvisibility.state != VisibilityUnobscured) XRaiseWindow(ui.dpy(), ui.win());
          break;
        case ButtonPress:
          if (ev.xbutton.button == Button1) {
            pressed = kAllowButton.contains(ev.xbutton.x, ev.xbutton.y)  ? 1
                      : kDenyButton.contains(ev.xbutton.x, ev.xbutton.y) ? 2
                                                                         : 0;
          }
          break;
        case ButtonRelease:
          if (ev.xbutton.button == Button1) {
            if (pressed == 1 && kAllowButton.contains(ev.xbutton.x, ev.xbutton.y)) {
              return kExitAllow;
            }
            if (pressed == 2 && kDenyButton.contains(ev.xbutton.x, ev.xbutton.y)) {
              return kExitDeny;
            }
            pressed = 0;
          }
          break;
        case KeyPress:
          if (XLookupKeysym(&ev.xkey, 0) == XK_Escape) return kExitDeny;
          break;
        case ClientMessage:
          // Closing the window is an answer: no.
          if (static_cast<Atom>(ev.xclient.data.l[0]) == ui.wm_delete()) return kExitDeny;
          break;
        default: break;
      }
    }
  }
}

int run_indicator(Ui& ui, const Options& o) {
  const auto name = display_name(o.admin);
  const int screen_w = DisplayWidth(ui.dpy(), ui.screen());
  ui.create(std::max(0, (screen_w - kBarWidth) / 2), 0, kBarWidth, kBarHeight, true,
            "Tether: screen shared", "tether-shadow-indicator");
  const unsigned long black = BlackPixel(ui.dpy(), ui.screen());
  const unsigned long stop_fill = ui.color("#f0a0a0", WhitePixel(ui.dpy(), ui.screen()));
  bool pressed = false;
  for (;;) {
    // A periodic raise keeps an override-redirect bar above windows mapped later.
    if (!wait_events(ui.dpy(), 2000)) return kExitError;
    if (XPending(ui.dpy()) == 0) {
      XRaiseWindow(ui.dpy(), ui.win());
      ui.flush();
      continue;
    }
    while (XPending(ui.dpy()) > 0) {
      XEvent ev;
      XNextEvent(ui.dpy(), &ev);
      switch (ev.type) {
        case Expose:
          if (ev.xexpose.count == 0) {
            ui.clear();
            ui.text(8, 16,
                    concat({ascii(o.view_only ? "Screen seen by " : "Screen shared with "), name}),
                    black);
            ui.button(kStopButton, "Stop sharing", stop_fill);
            ui.flush();
          }
          break;
        case VisibilityNotify:
          if (ev.xvisibility.state != VisibilityUnobscured) XRaiseWindow(ui.dpy(), ui.win());
          break;
        case ButtonPress:
          pressed =
              ev.xbutton.button == Button1 && kStopButton.contains(ev.xbutton.x, ev.xbutton.y);
          break;
        case ButtonRelease:
          if (ev.xbutton.button == Button1 && pressed &&
              kStopButton.contains(ev.xbutton.x, ev.xbutton.y)) {
            return 0;
          }
          pressed = false;
          break;
        default: break;
      }
    }
  }
}

int io_error_handler(Display*) {
  std::fputs("tether-shadow-ui: lost the connection to the X server\n", stderr);
  std::_Exit(kExitError);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    usage();
    return kExitUsage;
  }
  // None readable is no error here: try without one, as ever (an X server without access
  // control, or one that lets this user in by other means, still opens); if it does not,
  // the message says which files were unreadable.
  const auto authority = tether::vnc::use_first_readable_xauthority(o.xauthority);
  XSetIOErrorHandler(io_error_handler);
  Display* dpy = XOpenDisplay(o.display.c_str());
  if (dpy == nullptr) {
    std::fprintf(stderr, "tether-shadow-ui: cannot open display %s%s\n", o.display.c_str(),
                 authority ? "" : (" (" + authority.error().message + ")").c_str());
    return kExitError;
  }
  Ui ui(dpy);
  if (!ui.load_font()) {
    std::fputs("tether-shadow-ui: no core font \"fixed\" on this X server\n", stderr);
    return kExitError;
  }
  return o.mode == "prompt" ? run_prompt(ui, o) : run_indicator(ui, o);
}
