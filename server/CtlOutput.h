// What every tetherctl command prints: errors on stderr with the program's name and an exit
// code, JSON for --json, and table cells from JSON fields.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace tether::server {

inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

// "tetherctl: MESSAGE" on stderr; returns `code` for the command to exit with.
int fail(const std::string& message, int code = kExitError);
// Indented JSON on stdout; invalid UTF-8 from the server is replaced, never fatal.
void print_json(const nlohmann::json& j);
// A field for a table: "-" when missing, null or empty; strings as they are; else JSON.
std::string text(const nlohmann::json& j, const char* key);
// A unix-time field as UTC, "-" when missing.
std::string when(const nlohmann::json& j, const char* key);

}  // namespace tether::server
