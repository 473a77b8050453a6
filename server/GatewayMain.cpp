// tether-gateway: the gateway for devices outside the LAN (see server/Gateway.h).
#include <cstdio>
#include <string>

#include "common/CommandLine.h"
#include "common/Log.h"
#include "common/LwsLoop.h"
#include "common/Version.h"
#include "server/Gateway.h"
#include "server/GatewayConfig.h"

int main(int argc, char** argv) {
  using namespace tether;
  auto args = parse_command_line(argc, argv, server::gateway_command_line_options());
  if (!args.ok()) {
    (void)std::fprintf(stderr, "tether-gateway: %s\n", args.error().message.c_str());
    return 2;
  }
  if (args->has("help")) {
    std::printf(
        "Usage: tether-gateway [OPTIONS]\n\nThe Tether gateway for devices outside the LAN: "
        "devices and the server both connect to it.\nFirst start: tether-gateway --join TOKEN "
        "(from `tetherctl gateway add NAME --url wss://HOST:PORT`).\n\n%s",
        format_options_help(server::gateway_command_line_options()).c_str());
    return 0;
  }
  if (args->has("version")) {
    std::printf("tether-gateway %s\n", kVersion);
    return 0;
  }
  if (!args->positional().empty()) {
    (void)std::fprintf(stderr, "tether-gateway: unexpected argument \"%s\" (try --help)\n",
                       args->positional().front().c_str());
    return 2;
  }
  auto settings = server::load_gateway_settings(*args);
  if (!settings.ok()) {
    log::error(settings.error().message);
    return 2;
  }
  log::set_level(settings->log_level);
  route_lws_logging(settings->log_level == log::Level::kDebug);
  auto gateway = server::Gateway::create(*settings);
  if (!gateway.ok()) {
    log::error(gateway.error().message);
    return 1;
  }
  return (*gateway)->run();
}
