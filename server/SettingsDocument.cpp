#include "server/SettingsDocument.h"

#include "protocol/JsonFieldReader.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using protocol::json_type_name;
using protocol::string_is_kind;
using protocol::StringKind;

std::string shown_key(std::string_view key) {
  // Keys in messages are cut short: a refused key may be anything.
  return std::string(key.substr(0, kMaxSettingKeyLength + 8));
}

}  // namespace

Status check_setting_key(std::string_view key) {
  const auto dot = key.find('.');
  if (key.empty() || key.size() > kMaxSettingKeyLength ||
      !string_is_kind(key, StringKind::kToken) || dot == std::string_view::npos || dot == 0 ||
      dot + 1 == key.size() || key.find('.', dot + 1) != std::string_view::npos) {
    return make_error(Errc::kBadValue, "\"" + shown_key(key) +
                                           "\" is not a setting name: section.key, at most " +
                                           std::to_string(kMaxSettingKeyLength) +
                                           " characters of A-Z a-z 0-9 _ : -");
  }
  return {};
}

Status check_setting_value(std::string_view key, std::string_view value) {
  if (value.size() > kMaxSettingValueLength) {
    return make_error(Errc::kTooLarge, "the value of " + shown_key(key) + " is longer than " +
                                           std::to_string(kMaxSettingValueLength) + " bytes");
  }
  if (!string_is_kind(value, StringKind::kSingleLine)) {
    return make_error(Errc::kBadValue, "the value of " + shown_key(key) +
                                           " must be one line without control characters");
  }
  return {};
}

Result<SettingsChange> parse_settings_change(const json& body) {
  SettingsChange change;
  if (auto it = body.find("set"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) {
      return make_error(Errc::kWrongType,
                        "set must be an object, not " + std::string(json_type_name(*it)));
    }
    if (it->size() > kMaxSettings) {
      return make_error(Errc::kTooLarge,
                        "set has more than " + std::to_string(kMaxSettings) + " keys");
    }
    for (const auto& [key, value] : it->items()) {
      TETHER_TRY(check_setting_key(key));
      if (!value.is_string()) {
        return make_error(Errc::kWrongType, "set." + shown_key(key) + " must be a string, not " +
                                                std::string(json_type_name(value)));
      }
      const auto& text = value.get_ref<const std::string&>();
      TETHER_TRY(check_setting_value(key, text));
      change.set.emplace(key, text);
    }
  }
  if (auto it = body.find("unset"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) {
      return make_error(Errc::kWrongType,
                        "unset must be an array, not " + std::string(json_type_name(*it)));
    }
    if (it->size() > kMaxSettings) {
      return make_error(Errc::kTooLarge,
                        "unset has more than " + std::to_string(kMaxSettings) + " keys");
    }
    for (const auto& item : *it) {
      if (!item.is_string()) {
        return make_error(Errc::kWrongType,
                          "unset must hold strings, not " + std::string(json_type_name(item)));
      }
      const auto& key = item.get_ref<const std::string&>();
      TETHER_TRY(check_setting_key(key));
      if (change.set.count(key) != 0) {
        return make_error(Errc::kBadValue, shown_key(key) + " is both set and unset");
      }
      change.unset.push_back(key);
    }
  }
  return change;
}

Result<SettingsValues> apply_settings_change(SettingsValues current, const SettingsChange& change) {
  for (const auto& key : change.unset) current.erase(key);
  for (const auto& [key, value] : change.set) current[key] = value;
  if (current.size() > kMaxSettings) {
    return make_error(Errc::kTooLarge, "a device's settings are limited to " +
                                           std::to_string(kMaxSettings) + " keys; this makes " +
                                           std::to_string(current.size()));
  }
  return current;
}

std::string settings_to_json(const SettingsValues& values) {
  return json(values).dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<SettingsValues> settings_from_json(std::string_view text) {
  const json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return make_error(Errc::kSyntax, "the stored settings document is not a JSON object");
  }
  SettingsValues out;
  for (const auto& [key, value] : doc.items()) {
    if (!value.is_string()) {
      return make_error(Errc::kWrongType,
                        "the stored setting " + shown_key(key) + " is not a string");
    }
    out.emplace(key, value.get<std::string>());
  }
  return out;
}

}  // namespace tether::server
