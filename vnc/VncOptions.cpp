#include "vnc/VncOptions.h"

#include <charconv>
#include <vector>

#include "common/CommandLine.h"

namespace tether::vnc {
namespace {

const std::vector<OptionSpec>& specs() {
  static const std::vector<OptionSpec> kSpecs = {
      {"fd", 0, true, "N", "the connected socket to speak RFB on (inherited; required)"},
      {"display", 0, true, ":D", "the X display to show (required)"},
      {"xauthority", 0, true, "FILE",
       "the X authority file for the display; repeat it to name files to try in order"},
      {"view-only", 0, false, "", "drop the viewer's keyboard, pointer and clipboard"},
      {"monitor", 0, true, "NAME", "show one XRandR monitor instead of the whole screen"},
      {"no-clipboard", 0, false, "", "no clipboard in either direction"},
      {"clipboard-max", 0, true, "BYTES", "largest clipboard text passed on (default 1048576)"},
      {"desktop-name", 0, true, "TEXT", "the desktop name the viewer shows"},
      {"jpeg-quality", 0, true, "0-9",
       "Tight JPEG quality when the viewer does not ask for one (default 6)"},
      {"list-monitors", 0, false, "", "print the monitors as NAME WxH+X+Y and exit"},
      {"json", 0, false, "", "with --list-monitors: print JSON"},
      {"help", 'h', false, "", "show this help"},
  };
  return kSpecs;
}

// Above this a clipboard is not text anyone pastes; it only costs memory.
constexpr long long kMaxClipboardMax = 64LL << 20;

Result<long long> parse_integer(const std::string& option, const std::string& text, long long min,
                                long long max) {
  long long value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || ptr != end || value < min || value > max) {
    return make_error(Errc::kInvalidArgument, "--" + option + " wants an integer from " +
                                                  std::to_string(min) + " to " +
                                                  std::to_string(max) + ", not '" + text + "'");
  }
  return value;
}

}  // namespace

std::string vnc_usage() {
  return "usage: tether-vnc --fd N --display :D [--xauthority FILE] [--view-only] [--monitor "
         "NAME]\n"
         "                  [--no-clipboard] [--clipboard-max BYTES] [--desktop-name TEXT]\n"
         "                  [--jpeg-quality 0-9]\n"
         "       tether-vnc --list-monitors --display :D [--xauthority FILE] [--json]\n\n" +
         format_options_help(specs());
}

Result<VncOptions> parse_vnc_options(int argc, const char* const* argv) {
  TETHER_ASSIGN_OR_RETURN(ParsedArgs args, parse_command_line(argc, argv, specs()));
  VncOptions out;
  if (args.has("help")) {
    out.help = true;
    return out;
  }
  if (!args.positional().empty()) {
    return make_error(Errc::kInvalidArgument,
                      "unexpected argument '" + args.positional().front() + "' (try --help)");
  }
  out.list_monitors = args.has("list-monitors");
  out.json = args.has("json");
  if (out.json && !out.list_monitors) {
    return make_error(Errc::kInvalidArgument, "--json goes with --list-monitors");
  }
  out.display = args.value("display").value_or("");
  if (out.display.empty()) return make_error(Errc::kInvalidArgument, "--display is required");
  for (const auto& xauth : args.values("xauthority")) {
    if (xauth.empty()) return make_error(Errc::kInvalidArgument, "--xauthority wants a file");
    out.xauthority.push_back(xauth);
  }
  if (out.list_monitors) {
    for (const char* session_only : {"fd", "view-only", "monitor", "no-clipboard", "clipboard-max",
                                     "desktop-name", "jpeg-quality"}) {
      if (args.has(session_only)) {
        return make_error(Errc::kInvalidArgument,
                          std::string("--") + session_only + " does not go with --list-monitors");
      }
    }
    return out;
  }
  const auto fd = args.value("fd");
  if (!fd) return make_error(Errc::kInvalidArgument, "--fd is required");
  // libvncserver waits on its sockets with select(): the fd must be below FD_SETSIZE.
  TETHER_ASSIGN_OR_RETURN(long long fd_value, parse_integer("fd", *fd, 0, 1023));
  out.fd = static_cast<int>(fd_value);
  out.view_only = args.has("view-only");
  if (args.has("monitor")) {
    out.monitor = args.value("monitor").value_or("");
    if (out.monitor.empty()) return make_error(Errc::kInvalidArgument, "--monitor wants a name");
  }
  out.clipboard = !args.has("no-clipboard");
  if (auto max = args.value("clipboard-max")) {
    TETHER_ASSIGN_OR_RETURN(long long bytes,
                            parse_integer("clipboard-max", *max, 1, kMaxClipboardMax));
    out.clipboard_max = static_cast<std::size_t>(bytes);
  }
  out.desktop_name = args.value("desktop-name").value_or("");
  if (auto quality = args.value("jpeg-quality")) {
    TETHER_ASSIGN_OR_RETURN(long long q, parse_integer("jpeg-quality", *quality, 0, 9));
    out.jpeg_quality = static_cast<int>(q);
  }
  return out;
}

}  // namespace tether::vnc
