#include "server/GatewayConfig.h"

#include <climits>

#include "server/DaemonConfig.h"

namespace tether::server {
namespace {
constexpr std::int64_t kSecond = 1000;
}  // namespace

const ConfigSchema& gateway_config_schema() {
  static const ConfigSchema schema = {
      {"gateway.listen", SettingType::kEndpoint, "0.0.0.0:8443",
       "address and port of the TLS listener (device channels, the server's link, tunnels)"},
      {"gateway.max_connections", SettingType::kInteger, "10000",
       "device channels open at once; devices over the limit are refused and logged", 1, 10000000},
      {"gateway.ping_interval", SettingType::kDuration, "30s",
       "idle time before the gateway pings a channel; a silent peer is dropped after two", kSecond,
       3600 * kSecond},
      {"gateway.request_timeout", SettingType::kDuration, "30s",
       "how long an enrollment passed on to the server may wait for its answer", kSecond,
       300 * kSecond},
      {"shadow.max_sessions", SettingType::kInteger, "100",
       "shadowing sessions the gateway splices at once", 1, 100000},
      log_level_setting(),
  };
  return schema;
}

const std::vector<OptionSpec>& gateway_command_line_options() {
  static const std::vector<OptionSpec> options = {
      {"config", 'c', true, "FILE", "configuration file (default /etc/tether/gateway.conf)"},
      {"state-dir", 0, true, "DIR", "state directory (default /var/lib/tether-gateway)"},
      {"set", 0, true, "SECTION.KEY=VALUE", "override one setting (repeatable)"},
      {"listen", 0, true, "ADDR:PORT", "same as --set gateway.listen=ADDR:PORT"},
      {"join", 0, true, "TOKEN",
       "join the installation with the token of `tetherctl gateway add` (first start)"},
      {"help", 'h', false, "", "show this help"},
      {"version", 0, false, "", "print the version"},
  };
  return options;
}

Result<GatewaySettings> load_gateway_settings(const ParsedArgs& args) {
  TETHER_ASSIGN_OR_RETURN(
      Config config, load_daemon_config(args, gateway_config_schema(), kDefaultGatewayConfigFile,
                                        {{"listen", "gateway.listen"}}));
  GatewaySettings s;
  TETHER_ASSIGN_OR_RETURN(s.state_dir, daemon_state_dir(args, kDefaultGatewayStateDir));
  TETHER_ASSIGN_OR_RETURN(s.listen, parse_endpoint(config.string("gateway.listen")));
  s.max_connections = static_cast<std::size_t>(config.integer("gateway.max_connections"));
  s.ping_interval =
      std::chrono::duration_cast<std::chrono::seconds>(config.duration("gateway.ping_interval"));
  s.request_timeout =
      std::chrono::duration_cast<std::chrono::seconds>(config.duration("gateway.request_timeout"));
  s.shadow_max_sessions = static_cast<std::size_t>(config.integer("shadow.max_sessions"));
  TETHER_ASSIGN_OR_RETURN(s.log_level, daemon_log_level(config));
  s.join_token = args.value("join");
  return s;
}

}  // namespace tether::server
