// The settings document the server manages for a device (docs/api.md, "settings"): the agent
// INI keys the admin set, as a flat JSON object {"section.key": "value"}. The server checks
// only the shape (the protocol's limits); which keys and values an agent accepts is the
// agent's to decide, since agents of different versions know different keys.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/Result.h"

namespace tether::server {

using SettingsValues = std::map<std::string, std::string>;

// The limits of the UP `settings` message (docs/protocol.md §2.2).
inline constexpr std::size_t kMaxSettings = 256;
inline constexpr std::size_t kMaxSettingKeyLength = 64;
inline constexpr std::size_t kMaxSettingValueLength = 1024;

// A key is a token `section.key`: one dot, with something on both sides.
[[nodiscard]] Status check_setting_key(std::string_view key);
// A value is a single-line string of at most 1024 bytes.
[[nodiscard]] Status check_setting_value(std::string_view key, std::string_view value);

// A change asked for by an admin: values to set and keys to remove.
struct SettingsChange {
  SettingsValues set;
  std::vector<std::string> unset;
};

// {"set": {...}, "unset": [...]} (both optional), checked against the limits above. Errors
// name the field: `set.shadow.view_only must be a string, not boolean`.
[[nodiscard]] Result<SettingsChange> parse_settings_change(const nlohmann::json& body);
// `current` with the change applied; kTooLarge when the result has more than 256 keys.
[[nodiscard]] Result<SettingsValues> apply_settings_change(SettingsValues current,
                                                           const SettingsChange& change);

// The stored form (a JSON object) and back. A stored document that does not read back
// (written by hand, say) is an error naming what is wrong.
[[nodiscard]] std::string settings_to_json(const SettingsValues& values);
[[nodiscard]] Result<SettingsValues> settings_from_json(std::string_view text);

}  // namespace tether::server
