// What every tetherctl command prints: errors on stderr with the program's name and an exit
// code, JSON for --json, and table cells from JSON fields.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace tether::server {

inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

// "tetherctl: MESSAGE" on stderr; returns `code` for the command to exit with.
int fail(const std::string& message, int code = kExitError);
// Indented JSON on stdout; invalid UTF-8 from the server is replaced, never fatal.
void print_json(const nlohmann::json& j);
// A field for a table: "-" when missing, null or empty; strings made terminal-safe; else JSON.
std::string text(const nlohmann::json& j, const char* key);
// `raw` safe to print on a terminal: strings from the server often come from devices, and a
// device must not drive the admin's terminal. Control characters (C0 but '\n' when
// `keep_newlines`, DEL, C1), bidirectional overrides and isolates (U+061C, U+200E/F,
// U+202A-U+202E, U+2066-U+2069) and bytes that are not UTF-8 each become '?'.
std::string terminal_text(std::string_view raw, bool keep_newlines = false);
// A unix-time field as UTC, "-" when missing.
std::string when(const nlohmann::json& j, const char* key);

}  // namespace tether::server
