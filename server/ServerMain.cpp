// tether-server: the management server (see server/Server.h).
#include <cstdio>
#include <string>

#include "common/CommandLine.h"
#include "common/Log.h"
#include "common/LwsLoop.h"
#include "common/Version.h"
#include "server/Server.h"
#include "server/ServerConfig.h"

int main(int argc, char** argv) {
  using namespace tether;
  auto args = parse_command_line(argc, argv, server::server_command_line_options());
  if (!args.ok()) {
    (void)std::fprintf(stderr, "tether-server: %s\n", args.error().message.c_str());
    return 2;
  }
  if (args->has("help")) {
    std::printf("Usage: tether-server [OPTIONS]\n\nThe Tether management server.\n\n%s",
                format_options_help(server::server_command_line_options()).c_str());
    return 0;
  }
  if (args->has("version")) {
    std::printf("tether-server %s\n", kVersion);
    return 0;
  }
  if (!args->positional().empty()) {
    (void)std::fprintf(stderr, "tether-server: unexpected argument \"%s\" (try --help)\n",
                       args->positional().front().c_str());
    return 2;
  }
  auto settings = server::load_server_settings(*args);
  if (!settings.ok()) {
    log::error(settings.error().message);
    return 2;
  }
  log::set_level(settings->log_level);
  route_lws_logging(settings->log_level == log::Level::kDebug);
  auto server = server::Server::create(*settings);
  if (!server.ok()) {
    log::error(server.error().message);
    return 1;
  }
  return (*server)->run();
}
