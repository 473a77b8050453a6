#include "common/CommandLine.h"

#include <algorithm>

namespace tether {

std::optional<std::string> ParsedArgs::value(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> ParsedArgs::values(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

Result<ParsedArgs> parse_command_line(int argc, const char* const* argv,
                                      const std::vector<OptionSpec>& specs) {
  ParsedArgs out;
  auto find_long = [&](std::string_view name) -> const OptionSpec* {
    auto it = std::find_if(specs.begin(), specs.end(),
                           [&](const OptionSpec& s) { return s.name == name; });
    return it == specs.end() ? nullptr : &*it;
  };
  auto find_short = [&](char c) -> const OptionSpec* {
    auto it = std::find_if(specs.begin(), specs.end(),
                           [&](const OptionSpec& s) { return s.short_name == c; });
    return it == specs.end() ? nullptr : &*it;
  };

  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (options_done || arg.size() < 2 || arg[0] != '-') {
      out.positional_.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    const OptionSpec* spec = nullptr;
    std::optional<std::string> inline_value;
    std::string shown;
    if (arg.rfind("--", 0) == 0) {
      std::string name = arg.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name.resize(eq);
      }
      spec = find_long(name);
      shown = "--" + name;
    } else {
      if (arg.size() != 2) {
        return make_error(Errc::kInvalidArgument, "unknown option " + arg + " (try --help)");
      }
      spec = find_short(arg[1]);
      shown = arg;
    }
    if (spec == nullptr) {
      return make_error(Errc::kInvalidArgument, "unknown option " + shown + " (try --help)");
    }
    if (spec->takes_value) {
      if (!inline_value) {
        if (i + 1 >= argc) {
          return make_error(Errc::kInvalidArgument, shown + " needs a value");
        }
        inline_value = argv[++i];
      }
      out.values_[spec->name].push_back(*inline_value);
    } else {
      if (inline_value) return make_error(Errc::kInvalidArgument, shown + " takes no value");
      out.values_[spec->name].push_back("");
    }
  }
  return out;
}

std::string format_options_help(const std::vector<OptionSpec>& specs) {
  std::string out;
  for (const auto& s : specs) {
    std::string left = "  ";
    left += s.short_name ? std::string("-") + s.short_name + ", " : "    ";
    left += "--" + s.name;
    if (s.takes_value) left += " " + (s.value_name.empty() ? std::string("VALUE") : s.value_name);
    if (left.size() < 32)
      left.resize(32, ' ');
    else
      left += "  ";
    out += left + s.help + "\n";
  }
  return out;
}

}  // namespace tether
