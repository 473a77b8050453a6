// Where tether-agent's settings come from, and how the server's settings merge in.
//
// The server manages one drop-in, <main file>.d/50-server.conf, replaced as a whole by each
// `settings` message. Local files keep the last word on shadowing policy: a shadow.* value a
// local file (or --set) states explicitly cannot be weakened by the server.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/Config.h"
#include "common/Result.h"

namespace tether::agent {

inline constexpr const char* kServerDropin = "50-server.conf";

struct ConfigLocation {
  std::string main_file;
  bool main_file_required = false;
  std::vector<std::string> overrides;  // --set
  [[nodiscard]] std::string server_dropin() const { return main_file + ".d/" + kServerDropin; }
};

[[nodiscard]] Result<Config> load_agent_config(const ConfigLocation& location);

struct SettingsChange {
  // key -> (old effective value, new effective value), for every key whose value changed
  std::map<std::string, std::pair<std::string, std::string>> changed;
  Config config;  // the configuration now in force
};

// Applies a settings document from the server (all or nothing): checks every key and value,
// the local policy floor, writes the drop-in atomically (or removes it for an empty
// document) and returns the new configuration with what changed. Errors name every refused
// key: kPermissionDenied when the policy floor refused one, else kBadValue.
[[nodiscard]] Result<SettingsChange> apply_server_settings(
    const ConfigLocation& location, const Config& current,
    const std::map<std::string, std::string>& values);

// {"values": {...}, "origins": {...}}: what get_settings answers. Origins are "default",
// "FILE:LINE", "server" (the server's drop-in) or "--set".
[[nodiscard]] nlohmann::json describe_settings(const ConfigLocation& location,
                                               const Config& config);

// The drop-in's INI text for a settings document (sections in order).
[[nodiscard]] std::string render_dropin(const std::map<std::string, std::string>& values);

}  // namespace tether::agent
