#include "common/Config.h"

#include <dirent.h>
#include <ini.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

#include "common/Duration.h"
#include "common/FileIo.h"

namespace tether {
namespace {

constexpr std::size_t kMaxConfigFile = 1024 * 1024;
constexpr int kMaxLine = 4096;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Feeds inih one line at a time so that we know the line number of every key, and notices
// lines too long for its buffer (inih would silently split them).
struct LineReader {
  std::string_view text;
  std::size_t pos = 0;
  int line = 0;
  bool too_long = false;
};

char* read_line(char* buf, int size, void* stream) {
  auto* r = static_cast<LineReader*>(stream);
  if (r->pos >= r->text.size() || r->too_long) return nullptr;
  const std::size_t end = r->text.find('\n', r->pos);
  const std::size_t stop = end == std::string_view::npos ? r->text.size() : end + 1;
  const std::size_t len = stop - r->pos;
  ++r->line;
  // The limit applies to the text of the line, whatever ends it ("\n", "\r\n", or nothing).
  std::size_t text_len = len;
  if (text_len > 0 && r->text[r->pos + text_len - 1] == '\n') --text_len;
  if (text_len > 0 && r->text[r->pos + text_len - 1] == '\r') --text_len;
  if (text_len > static_cast<std::size_t>(kMaxLine - 3) ||
      len + 1 > static_cast<std::size_t>(size)) {
    r->too_long = true;
    return nullptr;
  }
  std::memcpy(buf, r->text.data() + r->pos, len);
  buf[len] = '\0';
  r->pos = stop;
  return buf;
}

struct ParseState {
  Config* config;
  const std::string* name;
  LineReader* reader;
  std::optional<Error> error;
};

int on_value(void* user, const char* section, const char* name, const char* value) {
  auto* st = static_cast<ParseState*>(user);
  const std::string where = *st->name + ":" + std::to_string(st->reader->line);
  if (section == nullptr || *section == '\0') {
    st->error = make_error(Errc::kBadValue, where + ": \"" + name + "\" is outside a [section]");
    return 0;
  }
  const std::string key = lower(section) + "." + lower(name);
  if (st->config->spec(key) == nullptr) {
    const bool section_known = std::any_of(
        st->config->schema().begin(), st->config->schema().end(),
        [&](const SettingSpec& s) { return s.key.rfind(lower(section) + ".", 0) == 0; });
    st->error = make_error(
        Errc::kBadValue, section_known
                             ? where + ": unknown key \"" + name + "\" in section [" + section + "]"
                             : where + ": unknown section [" + section + "]");
    return 0;
  }
  auto status = st->config->set(key, value, where);
  if (!status.ok()) {
    st->error = status.error();
    return 0;
  }
  return 1;
}

Result<std::vector<std::string>> conf_d_files(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT || errno == ENOTDIR) return out;
    return make_error(Errc::kIo, "cannot read directory " + dir + ": " + std::strerror(errno));
  }
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".conf") == 0 && name[0] != '.') {
      out.push_back(dir + "/" + name);
    }
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

Result<bool> parse_bool(std::string_view text) {
  const std::string t = lower(text);
  if (t == "true" || t == "yes" || t == "on" || t == "1") return true;
  if (t == "false" || t == "no" || t == "off" || t == "0") return false;
  return make_error(Errc::kBadValue, "\"" + std::string(text.substr(0, 40)) +
                                         "\" is not a boolean (true/false, yes/no, on/off, 1/0)");
}

Result<Endpoint> parse_endpoint(std::string_view text) {
  auto bad = [&](std::string why) {
    return make_error(Errc::kBadValue,
                      "\"" + std::string(text.substr(0, 80)) + "\" is not HOST:PORT: " + why);
  };
  Endpoint ep;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return bad("expected [ADDRESS]:PORT");
    }
    ep.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("missing :PORT");
    ep.host = std::string(text.substr(0, colon));
    if (ep.host.find(':') != std::string::npos)
      return bad("write IPv6 addresses as [ADDRESS]:PORT");
    port_text = text.substr(colon + 1);
  }
  if (ep.host.empty()) return bad("missing host");
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port == 0 ||
      port > 65535) {
    return bad("port must be 1-65535");
  }
  ep.port = static_cast<std::uint16_t>(port);
  return ep;
}

Result<std::string> validate_setting(const SettingSpec& spec, std::string_view value) {
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f) {
      return make_error(Errc::kBadValue, spec.key + ": control characters are not allowed");
    }
  }
  auto with_key = [&](const Error& e) { return e.context(spec.key); };
  switch (spec.type) {
    case SettingType::kString:
      if (static_cast<std::int64_t>(value.size()) > std::min<std::int64_t>(spec.max, 4096)) {
        return make_error(Errc::kBadValue, spec.key + ": too long");
      }
      return std::string(value);
    case SettingType::kBool: {
      auto b = parse_bool(value);
      if (!b.ok()) return with_key(b.error());
      return std::string(*b ? "true" : "false");
    }
    case SettingType::kInteger: {
      std::int64_t n = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || ptr != value.data() + value.size() || value.empty()) {
        return make_error(Errc::kBadValue, spec.key + ": \"" + std::string(value.substr(0, 40)) +
                                               "\" is not an integer");
      }
      if (n < spec.min || n > spec.max) {
        return make_error(Errc::kBadValue, spec.key + ": must be between " +
                                               std::to_string(spec.min) + " and " +
                                               std::to_string(spec.max));
      }
      return std::to_string(n);
    }
    case SettingType::kDuration: {
      auto d = parse_duration(value);
      if (!d.ok()) return with_key(d.error());
      if (d->count() < spec.min || d->count() > spec.max) {
        return make_error(Errc::kBadValue,
                          spec.key + ": must be between " +
                              format_duration(std::chrono::milliseconds(spec.min)) + " and " +
                              format_duration(std::chrono::milliseconds(spec.max)));
      }
      return std::string(value);
    }
    case SettingType::kEnum: {
      const std::string v = lower(value);
      if (std::find(spec.choices.begin(), spec.choices.end(), v) == spec.choices.end()) {
        std::string all;
        for (const auto& c : spec.choices) all += (all.empty() ? "" : ", ") + c;
        return make_error(Errc::kBadValue, spec.key + ": must be one of " + all);
      }
      return v;
    }
    case SettingType::kEndpoint: {
      auto ep = parse_endpoint(value);
      if (!ep.ok()) return with_key(ep.error());
      return std::string(value);
    }
  }
  return make_error(Errc::kInternal, spec.key + ": unknown setting type");
}

Config::Config(const ConfigSchema& schema) : schema_(&schema) {
  for (const auto& spec : schema) values_[spec.key] = Value{spec.default_value, "default"};
}

const SettingSpec* Config::spec(std::string_view key) const {
  auto it = std::find_if(schema_->begin(), schema_->end(),
                         [&](const SettingSpec& s) { return s.key == key; });
  return it == schema_->end() ? nullptr : &*it;
}

Status Config::set(std::string_view key, std::string_view value, std::string origin) {
  const SettingSpec* s = spec(key);
  if (s == nullptr) {
    return make_error(Errc::kBadValue, origin + ": unknown setting \"" + std::string(key) + "\"");
  }
  auto normalised = validate_setting(*s, value);
  if (!normalised.ok()) return normalised.error().context(origin);
  values_[s->key] = Value{std::move(normalised).value(), std::move(origin)};
  return {};
}

Status Config::apply_ini(std::string_view content, const std::string& name) {
  // inih's behaviour switches are process-global; set them for every parse.
  ini_use_stack = false;
  ini_max_line = kMaxLine;
  // With a heap buffer and no realloc, inih's buffer is ini_initial_alloc bytes (default 200),
  // not ini_max_line: without this, every line over 197 characters was "too long".
  ini_initial_alloc = kMaxLine;
  ini_allow_realloc = false;
  ini_allow_multiline = false;
  ini_allow_inline_comments = false;
  ini_allow_no_value = false;
  ini_stop_on_first_error = true;
  // inih works on C strings: a NUL would silently cut the line (and its value) short.
  if (const auto nul = content.find('\0'); nul != std::string_view::npos) {
    const auto line = 1 + std::count(content.begin(), content.begin() + nul, '\n');
    return make_error(Errc::kBadValue,
                      name + ":" + std::to_string(line) + ": contains a NUL character");
  }
  LineReader reader{content, 0, 0, false};
  ParseState state{this, &name, &reader, std::nullopt};
  const int rc = ini_parse_stream(read_line, &reader, on_value, &state);
  if (state.error) return *state.error;
  if (reader.too_long) {
    return make_error(Errc::kBadValue, name + ":" + std::to_string(reader.line) +
                                           ": line longer than " + std::to_string(kMaxLine - 3) +
                                           " characters");
  }
  if (rc > 0) {
    return make_error(Errc::kBadValue,
                      name + ":" + std::to_string(rc) + ": not a [section] or key = value line");
  }
  if (rc < 0) return make_error(Errc::kInternal, name + ": the INI parser could not allocate");
  return {};
}

Result<Config> Config::load(const ConfigSchema& schema, const ConfigSources& sources) {
  Config config(schema);
  std::vector<std::string> files;
  if (!sources.main_file.empty()) {
    if (file_exists(sources.main_file)) {
      files.push_back(sources.main_file);
    } else if (sources.main_file_required) {
      return make_error(Errc::kNotFound,
                        "configuration file " + sources.main_file + " does not exist");
    }
    TETHER_ASSIGN_OR_RETURN(auto dropins, conf_d_files(sources.main_file + ".d"));
    for (const auto& [path, content] : sources.dropin_overrides) {
      if (!content.empty() && std::find(dropins.begin(), dropins.end(), path) == dropins.end()) {
        dropins.push_back(path);
      }
    }
    std::sort(dropins.begin(), dropins.end());
    files.insert(files.end(), dropins.begin(), dropins.end());
  }
  for (const auto& file : files) {
    std::string content;
    if (auto ov = sources.dropin_overrides.find(file); ov != sources.dropin_overrides.end()) {
      if (ov->second.empty()) continue;
      content = ov->second;
    } else {
      TETHER_ASSIGN_OR_RETURN(content, read_file(file, kMaxConfigFile));
    }
    TETHER_TRY(config.apply_ini(content, file));
    config.files_.push_back(file);
  }
  for (const auto& ov : sources.overrides) {
    const auto eq = ov.find('=');
    if (eq == std::string::npos || ov.find('.') > eq) {
      return make_error(Errc::kInvalidArgument, "--set " + ov + ": expected SECTION.KEY=VALUE");
    }
    TETHER_TRY(config.set(lower(ov.substr(0, eq)), ov.substr(eq + 1), "--set " + ov.substr(0, eq)));
  }
  return config;
}

const Config::Value& Config::get(std::string_view key) const {
  auto it = values_.find(key);
  // A key not in the schema is a programming error, caught by every test that loads config.
  if (it == values_.end()) {
    static const Value kMissing{"", "unknown"};
    return kMissing;
  }
  return it->second;
}

const std::string& Config::string(std::string_view key) const {
  return get(key).text;
}
bool Config::boolean(std::string_view key) const {
  return get(key).text == "true";
}
std::int64_t Config::integer(std::string_view key) const {
  std::int64_t n = 0;
  const auto& t = get(key).text;
  std::from_chars(t.data(), t.data() + t.size(), n);
  return n;
}
std::chrono::milliseconds Config::duration(std::string_view key) const {
  return parse_duration(get(key).text).value_or(std::chrono::milliseconds(0));
}
const std::string& Config::origin(std::string_view key) const {
  return get(key).origin;
}

}  // namespace tether
