// Configuration loading shared by tether-server and tether-gateway: the -c/--config file (or
// the default one, optional), --set overrides and the dedicated options that stand for
// settings, --state-dir, and the log.level setting both have.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/CommandLine.h"
#include "common/Config.h"
#include "common/Log.h"
#include "common/Result.h"

namespace tether::server {

// The log.level entry of a daemon's schema.
[[nodiscard]] SettingSpec log_level_setting();

// Loads `schema` from --config (required when given) or `default_file` (optional), then
// --set, then `dedicated`: {option, key} pairs such as {"listen", "server.listen"}, the most
// specific way to say a setting, so they win over --set.
[[nodiscard]] Result<Config> load_daemon_config(
    const ParsedArgs& args, const ConfigSchema& schema, const std::string& default_file,
    const std::vector<std::pair<std::string, std::string>>& dedicated);

// --state-dir or `default_dir`, without trailing slashes; an empty one is an error.
[[nodiscard]] Result<std::string> daemon_state_dir(const ParsedArgs& args,
                                                   const std::string& default_dir);

// log.level of a loaded config.
[[nodiscard]] Result<log::Level> daemon_log_level(const Config& config);

}  // namespace tether::server
