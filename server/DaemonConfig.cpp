#include "server/DaemonConfig.h"

#include <climits>

namespace tether::server {

SettingSpec log_level_setting() {
  return {"log.level",
          SettingType::kEnum,
          "info",
          "error, warning, notice, info or debug",
          0,
          INT64_MAX,
          {"error", "warning", "notice", "info", "debug"}};
}

Result<Config> load_daemon_config(
    const ParsedArgs& args, const ConfigSchema& schema, const std::string& default_file,
    const std::vector<std::pair<std::string, std::string>>& dedicated) {
  ConfigSources sources;
  if (auto file = args.value("config")) {
    sources.main_file = *file;
    sources.main_file_required = true;
  } else {
    sources.main_file = default_file;
  }
  sources.overrides = args.values("set");
  for (const auto& [option, key] : dedicated) {
    if (auto value = args.value(option)) sources.overrides.push_back(key + "=" + *value);
  }
  return Config::load(schema, sources);
}

Result<std::string> daemon_state_dir(const ParsedArgs& args, const std::string& default_dir) {
  std::string dir = args.value("state-dir").value_or(default_dir);
  if (dir.empty()) return make_error(Errc::kInvalidArgument, "--state-dir must not be empty");
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

Result<log::Level> daemon_log_level(const Config& config) {
  log::Level level = log::Level::kInfo;
  if (!log::parse_level(config.string("log.level"), level)) {
    return make_error(Errc::kBadValue, "log.level: unknown level");
  }
  return level;
}

}  // namespace tether::server
