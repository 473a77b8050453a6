// Command-line parsing shared by every Tether binary. Options may appear before or after the
// subcommand (the brief's contract: `tether-agent --state-dir D status` equals
// `tether-agent status --state-dir D`). Supports --name=value, --name value, -x value, and
// "--" to end options.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/Result.h"

namespace tether {

struct OptionSpec {
  std::string name;     // long name without dashes: "state-dir"
  char short_name = 0;  // 'c', or 0
  bool takes_value = false;
  std::string value_name;  // for help: "DIR"
  std::string help;
};

class ParsedArgs {
 public:
  [[nodiscard]] const std::vector<std::string>& positional() const noexcept { return positional_; }
  [[nodiscard]] bool has(const std::string& name) const { return values_.count(name) != 0; }
  // The last value given for `name` (later ones override earlier ones).
  [[nodiscard]] std::optional<std::string> value(const std::string& name) const;
  // Every value of a repeatable option, in order.
  [[nodiscard]] std::vector<std::string> values(const std::string& name) const;

 private:
  friend Result<ParsedArgs> parse_command_line(int argc, const char* const* argv,
                                               const std::vector<OptionSpec>& specs);
  std::vector<std::string> positional_;
  std::map<std::string, std::vector<std::string>> values_;
};

[[nodiscard]] Result<ParsedArgs> parse_command_line(int argc, const char* const* argv,
                                                    const std::vector<OptionSpec>& specs);

// Formats the options for --help, one per line.
[[nodiscard]] std::string format_options_help(const std::vector<OptionSpec>& specs);

}  // namespace tether
