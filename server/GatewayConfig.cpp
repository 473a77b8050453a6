#include "server/GatewayConfig.h"

#include <climits>

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
      {"log.level",
       SettingType::kEnum,
       "info",
       "error, warning, notice, info or debug",
       0,
       INT64_MAX,
       {"error", "warning", "notice", "info", "debug"}},
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
  ConfigSources sources;
  if (auto file = args.value("config")) {
    sources.main_file = *file;
    sources.main_file_required = true;
  } else {
    sources.main_file = kDefaultGatewayConfigFile;
  }
  sources.overrides = args.values("set");
  if (auto listen = args.value("listen")) sources.overrides.push_back("gateway.listen=" + *listen);
  TETHER_ASSIGN_OR_RETURN(Config config, Config::load(gateway_config_schema(), sources));
  GatewaySettings s;
  s.state_dir = args.value("state-dir").value_or(kDefaultGatewayStateDir);
  if (s.state_dir.empty())
    return make_error(Errc::kInvalidArgument, "--state-dir must not be empty");
  while (s.state_dir.size() > 1 && s.state_dir.back() == '/') s.state_dir.pop_back();
  TETHER_ASSIGN_OR_RETURN(s.listen, parse_endpoint(config.string("gateway.listen")));
  s.max_connections = static_cast<std::size_t>(config.integer("gateway.max_connections"));
  s.ping_interval =
      std::chrono::duration_cast<std::chrono::seconds>(config.duration("gateway.ping_interval"));
  s.request_timeout =
      std::chrono::duration_cast<std::chrono::seconds>(config.duration("gateway.request_timeout"));
  s.shadow_max_sessions = static_cast<std::size_t>(config.integer("shadow.max_sessions"));
  if (!log::parse_level(config.string("log.level"), s.log_level)) {
    return make_error(Errc::kBadValue, "log.level: unknown level");
  }
  s.join_token = args.value("join");
  return s;
}

}  // namespace tether::server
