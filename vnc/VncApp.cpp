#include "vnc/VncApp.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "common/Log.h"
#include "vnc/RfbServer.h"
#include "vnc/VncOptions.h"
#include "vnc/VncSession.h"
#include "vnc/X11Display.h"

namespace tether::vnc {
namespace {

int list_monitors_main(const VncOptions& options) {
  auto display = open_display(options.display, options.xauthority);
  if (!display) {
    log::error(display.error().what());
    return 1;
  }
  auto monitors = list_monitors(display->get());
  if (!monitors) {
    log::error(monitors.error().what());
    return 1;
  }
  if (options.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Monitor& m : *monitors) {
      out.push_back({{"name", m.name},
                     {"width", m.area.width},
                     {"height", m.area.height},
                     {"x", m.area.x},
                     {"y", m.area.y},
                     {"primary", m.primary}});
    }
    (void)std::printf("%s\n",
                      out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    for (const Monitor& m : *monitors) (void)std::printf("%s\n", format_monitor(m).c_str());
  }
  return 0;
}

}  // namespace

int tether_vnc_main(int argc, const char* const* argv) {
  auto options = parse_vnc_options(argc, argv);
  if (!options) {
    log::error("tether-vnc: " + options.error().what());
    return 2;
  }
  if (options->help) {
    (void)std::fputs(vnc_usage().c_str(), stdout);
    return 0;
  }
  // Not part of the agent's contract: more detail for whoever runs it by hand.
  if (const char* level = std::getenv("TETHER_VNC_LOG_LEVEL")) {
    log::Level parsed{};
    if (log::parse_level(level, parsed)) log::set_level(parsed);
  }
  install_x_error_handlers();
  route_libvncserver_logs();
  if (options->list_monitors) return list_monitors_main(*options);

  struct stat st {};
  if (fstat(options->fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    log::error("tether-vnc: --fd " + std::to_string(options->fd) + " is not an open socket");
    return 2;
  }
  // Nothing is ever exec'd, but the socket must not leak should that change.
  (void)fcntl(options->fd, F_SETFD, FD_CLOEXEC);
  UniqueFd socket(options->fd);

  auto session = VncSession::create(*options);
  if (!session) {
    log::error(session.error().what());
    return 1;
  }
  if (Result<void> ran = (*session)->run(std::move(socket)); !ran.ok()) {
    log::error(ran.error().what());
    return 1;
  }
  return 0;
}

}  // namespace tether::vnc
