// tether-gateway's settings: the INI schema, the command line and the typed values.
// Every key is documented in docs/configuration.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/CommandLine.h"
#include "common/Config.h"
#include "common/Log.h"
#include "common/Result.h"

namespace tether::server {

inline constexpr const char* kDefaultGatewayConfigFile = "/etc/tether/gateway.conf";
inline constexpr const char* kDefaultGatewayStateDir = "/var/lib/tether-gateway";

[[nodiscard]] const ConfigSchema& gateway_config_schema();
[[nodiscard]] const std::vector<OptionSpec>& gateway_command_line_options();

struct GatewaySettings {
  std::string state_dir = kDefaultGatewayStateDir;
  Endpoint listen;
  std::size_t max_connections = 10000;
  std::chrono::seconds ping_interval{30};
  std::chrono::seconds request_timeout{30};
  std::size_t shadow_max_sessions = 100;
  log::Level log_level = log::Level::kInfo;
  std::optional<std::string> join_token;  // --join
};

// -c FILE (or the default file), then --set, then --listen and --join.
[[nodiscard]] Result<GatewaySettings> load_gateway_settings(const ParsedArgs& args);

}  // namespace tether::server
