// INI configuration (inih) checked against a schema of known keys.
//
// A daemon reads its main file (default /etc/tether/NAME.conf, or -c FILE), then every
// "*.conf" in "<main file>.d/" in lexical order, then each --set SECTION.KEY=VALUE. Later
// values override earlier ones. Unknown sections or keys and bad values are errors that name
// the file and line (or the --set argument).
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/Result.h"

namespace tether {

enum class SettingType {
  kString,    // any single-line text
  kBool,      // true/false, yes/no, on/off, 1/0 (stored as true/false)
  kInteger,   // within [min, max]
  kDuration,  // 500ms, 30s, 5m, 2h, 1d, or seconds; within [min, max] milliseconds
  kEnum,      // one of `choices`
  kEndpoint,  // HOST:PORT or [V6]:PORT, port 1-65535
};

struct SettingSpec {
  std::string key;  // "section.name"
  SettingType type = SettingType::kString;
  std::string default_value;
  std::string help;
  std::int64_t min = 0;
  std::int64_t max = std::numeric_limits<std::int64_t>::max();
  std::vector<std::string> choices;
};

using ConfigSchema = std::vector<SettingSpec>;

struct ConfigSources {
  std::string main_file;
  bool main_file_required = false;     // true for -c FILE; the default path may be absent
  std::vector<std::string> overrides;  // "section.key=value", from --set
  // Content to use instead of what is on disk for these drop-in paths (inside the drop-in
  // directory); an empty string stands for "no such file". Lets a caller see what the
  // configuration would be with a drop-in changed before it writes the file.
  std::map<std::string, std::string> dropin_overrides;
};

class Config {
 public:
  // Defaults only.
  explicit Config(const ConfigSchema& schema);

  [[nodiscard]] static Result<Config> load(const ConfigSchema& schema,
                                           const ConfigSources& sources);

  // Validates and sets one value; `origin` names where it came from for later messages.
  [[nodiscard]] Status set(std::string_view key, std::string_view value, std::string origin);
  // Parses and applies one INI document (a file's content); `name` is used in errors.
  [[nodiscard]] Status apply_ini(std::string_view content, const std::string& name);

  [[nodiscard]] const std::string& string(std::string_view key) const;
  [[nodiscard]] bool boolean(std::string_view key) const;
  [[nodiscard]] std::int64_t integer(std::string_view key) const;
  [[nodiscard]] std::chrono::milliseconds duration(std::string_view key) const;
  // "file:line", "--set", or "default".
  [[nodiscard]] const std::string& origin(std::string_view key) const;

  [[nodiscard]] const ConfigSchema& schema() const noexcept { return *schema_; }
  [[nodiscard]] const std::vector<std::string>& files_read() const noexcept { return files_; }
  [[nodiscard]] const SettingSpec* spec(std::string_view key) const;

 private:
  struct Value {
    std::string text;
    std::string origin;
  };
  const Value& get(std::string_view key) const;

  const ConfigSchema* schema_;
  std::map<std::string, Value, std::less<>> values_;
  std::vector<std::string> files_;
};

// Checks `value` against `spec` and returns its normalised text (bools as true/false).
[[nodiscard]] Result<std::string> validate_setting(const SettingSpec& spec, std::string_view value);
[[nodiscard]] Result<bool> parse_bool(std::string_view text);

// Splits "HOST:PORT" / "[V6]:PORT".
struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
};
[[nodiscard]] Result<Endpoint> parse_endpoint(std::string_view text);

}  // namespace tether
