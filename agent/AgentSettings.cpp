#include "agent/AgentSettings.h"

#include "agent/AgentConfig.h"
#include "agent/ShadowPolicy.h"
#include "common/FileIo.h"

namespace tether::agent {
namespace {

// A policy key and the value that is the safer one: the server may move a setting toward
// it, never away from what a local file says.
struct PolicyRule {
  const char* key;
  const char* safe_value;
};
constexpr PolicyRule kPolicy[] = {
    {"shadow.allowed", "false"},
    {"shadow.prompt_user", "true"},
    {"shadow.view_only", "true"},
    {"shadow.prompt_default", "deny"},
};

// Settings that name programs or files the agent runs or reads as root: never from the
// server (a pushed shadow.vnc_path would run anything on every device).
bool is_local_only(const std::string& key) {
  return key == "shadow.vnc_path" || key == "shadow.ui_path" || key == "shadow.xauthority";
}

ConfigSources sources_of(const ConfigLocation& location) {
  ConfigSources s;
  s.main_file = location.main_file;
  s.main_file_required = location.main_file_required;
  s.overrides = location.overrides;
  return s;
}

bool from_server_dropin(const ConfigLocation& location, const std::string& origin) {
  const std::string dropin = location.server_dropin();
  return origin.rfind(dropin + ":", 0) == 0;
}

}  // namespace

Result<Config> load_agent_config(const ConfigLocation& location) {
  return Config::load(agent_config_schema(), sources_of(location));
}

std::string render_dropin(const std::map<std::string, std::string>& values) {
  std::string out =
      "# Written by tether-agent from the settings the management server pushed.\n"
      "# Do not edit: the next push replaces this file. Local files override it only for\n"
      "# shadowing policy; put local settings in another drop-in.\n";
  std::string section;
  for (const auto& [key, value] : values) {  // std::map: sorted, so sections are contiguous
    const auto dot = key.find('.');
    const std::string s = key.substr(0, dot);
    if (s != section) {
      out += "\n[" + s + "]\n";
      section = s;
    }
    out += key.substr(dot + 1) + " = " + value + "\n";
  }
  return out;
}

Result<SettingsChange> apply_server_settings(const ConfigLocation& location, const Config& current,
                                             const std::map<std::string, std::string>& values) {
  std::vector<std::string> bad;
  std::vector<std::string> denied;
  std::map<std::string, std::string> normalised;
  for (const auto& [key, value] : values) {
    const SettingSpec* spec = current.spec(key);
    if (spec == nullptr) {
      bad.push_back(key + ": unknown setting");
      continue;
    }
    if (key.rfind("server.", 0) == 0 || is_local_only(key)) {
      bad.push_back(key + ": can only be set on the device itself");
      continue;
    }
    auto checked = validate_setting(*spec, value);
    if (!checked.ok()) {
      bad.push_back(checked.error().message);
      continue;
    }
    normalised[key] = *checked;
  }

  ConfigSources local_sources = sources_of(location);
  local_sources.dropin_overrides[location.server_dropin()] = "";
  TETHER_ASSIGN_OR_RETURN(Config local, Config::load(agent_config_schema(), local_sources));
  for (const auto& rule : kPolicy) {
    auto pushed = normalised.find(rule.key);
    if (pushed == normalised.end()) continue;
    const std::string& origin = local.origin(rule.key);
    const std::string& local_value = local.string(rule.key);
    if (origin != "default" && local_value == rule.safe_value &&
        pushed->second != rule.safe_value) {
      denied.push_back(std::string(rule.key) + ": the local configuration (" + origin + ") says " +
                       local_value + " and the server may not weaken it");
    }
  }

  // shadow.viewers: the server may narrow a locally set list of viewer kinds, never widen it.
  if (auto pushed = normalised.find("shadow.viewers"); pushed != normalised.end()) {
    const std::string& origin = local.origin("shadow.viewers");
    const std::string& local_value = local.string("shadow.viewers");
    if (origin != "default" && !viewers_within(local_value, pushed->second)) {
      denied.push_back("shadow.viewers: the local configuration (" + origin + ") says " +
                       local_value + " and the server may not widen it");
    }
  }

  if (!bad.empty() || !denied.empty()) {
    std::string message = "settings refused, nothing changed: ";
    bool first = true;
    for (const auto* list : {&denied, &bad}) {
      for (const auto& item : *list) {
        message += (first ? "" : "; ") + item;
        first = false;
      }
    }
    return make_error(denied.empty() ? Errc::kBadValue : Errc::kPermissionDenied, message);
  }

  // What the configuration will be, computed before anything is written.
  const std::string text = normalised.empty() ? std::string() : render_dropin(normalised);
  ConfigSources next_sources = sources_of(location);
  next_sources.dropin_overrides[location.server_dropin()] = text;
  TETHER_ASSIGN_OR_RETURN(Config next, Config::load(agent_config_schema(), next_sources));

  if (normalised.empty()) {
    TETHER_TRY(remove_file(location.server_dropin()));
  } else {
    TETHER_TRY(ensure_directory(location.main_file + ".d", 0755, false));
    TETHER_TRY(write_file_atomic(location.server_dropin(), text, 0644));
  }
  SettingsChange change{{}, std::move(next)};
  for (const auto& spec : agent_config_schema()) {
    const std::string& before = current.string(spec.key);
    const std::string& after = change.config.string(spec.key);
    if (before != after) change.changed[spec.key] = {before, after};
  }
  return change;
}

nlohmann::json describe_settings(const ConfigLocation& location, const Config& config) {
  nlohmann::json values = nlohmann::json::object();
  nlohmann::json origins = nlohmann::json::object();
  for (const auto& spec : agent_config_schema()) {
    values[spec.key] = config.string(spec.key);
    const std::string& origin = config.origin(spec.key);
    if (from_server_dropin(location, origin)) {
      origins[spec.key] = "server";
    } else if (origin.rfind("--set", 0) == 0) {
      origins[spec.key] = "--set";
    } else {
      origins[spec.key] = origin;
    }
  }
  return {{"values", values}, {"origins", origins}};
}

}  // namespace tether::agent
