// tether-vnc's command line, a contract with the agent's ShadowSession (docs/configuration.md):
//
//   tether-vnc --fd N --display :D [--xauthority FILE] [--view-only] [--monitor NAME]
//              [--no-clipboard] [--clipboard-max BYTES] [--desktop-name TEXT]
//              [--jpeg-quality 0-9]
//   tether-vnc --list-monitors --display :D [--xauthority FILE] [--json]
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "common/Result.h"

namespace tether::vnc {

// Note: libvncserver itself hangs up on a ClientCutText above 1 MiB, whatever the cap.
inline constexpr std::size_t kDefaultClipboardMax = std::size_t{1} << 20;
inline constexpr int kDefaultJpegQuality = 6;

struct VncOptions {
  bool help = false;
  bool list_monitors = false;
  bool json = false;
  int fd = -1;
  std::string display;
  std::vector<std::string> xauthority;  // the first readable one is used
  bool view_only = false;
  std::string monitor;  // empty: the whole screen
  bool clipboard = true;
  std::size_t clipboard_max = kDefaultClipboardMax;
  std::string desktop_name;  // empty: the X display name
  int jpeg_quality = kDefaultJpegQuality;
};

// Errors are usage errors (exit status 2), worded for a person.
[[nodiscard]] Result<VncOptions> parse_vnc_options(int argc, const char* const* argv);

[[nodiscard]] std::string vnc_usage();

}  // namespace tether::vnc
