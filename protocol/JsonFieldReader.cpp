#include "protocol/JsonFieldReader.h"

#include <cmath>

namespace tether::protocol {

using json = nlohmann::json;

std::string_view json_type_name(const json& value) noexcept {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    case json::value_t::binary: return "binary";
    case json::value_t::discarded: return "discarded";
  }
  return "unknown";
}

bool string_is_kind(std::string_view value, StringKind kind) noexcept {
  switch (kind) {
    case StringKind::kText: return true;
    case StringKind::kSingleLine:
      for (std::size_t i = 0; i < value.size(); ++i) {
        const auto c = static_cast<unsigned char>(value[i]);
        if (c < 0x20 || c == 0x7f) return false;
        // C1 controls U+0080..U+009F (C2 80..C2 9F): a terminal may act on them (CSI 9B).
        if (c == 0xc2 && i + 1 < value.size() && static_cast<unsigned char>(value[i + 1]) < 0xa0) {
          return false;
        }
      }
      return true;
    case StringKind::kToken:
      if (value.empty()) return false;
      for (char c : value) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok) return false;
      }
      return true;
    case StringKind::kHex64:
      if (value.size() != 64) return false;
      for (char c : value) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
      }
      return true;
  }
  return false;
}

JsonFieldReader::JsonFieldReader(const json& object, std::string path)
    : object_(object), path_(std::move(path)) {
  if (!object_.is_object()) {
    error_ = make_error(Errc::kWrongType,
                        path_ + " must be an object, not " + std::string(json_type_name(object_)));
  }
}

std::string JsonFieldReader::field_path(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

void JsonFieldReader::fail(Errc code, std::string message) {
  if (!error_) error_ = make_error(code, std::move(message));
}

Status JsonFieldReader::finish() const {
  if (error_) return *error_;
  return {};
}

const json* JsonFieldReader::find(std::string_view key, bool required) {
  if (error_) return nullptr;
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) {
    if (required) fail(Errc::kMissingField, "missing field " + field_path(key));
    return nullptr;
  }
  return &*it;
}

void JsonFieldReader::wrong_type(std::string_view key, std::string_view expected, const json& got) {
  fail(Errc::kWrongType, field_path(key) + " must be " + std::string(expected) + ", not " +
                             std::string(json_type_name(got)));
}

bool JsonFieldReader::check_string(const std::string& value, std::string_view key,
                                   std::size_t max_len, StringKind kind) {
  if (value.size() > max_len) {
    fail(Errc::kTooLarge, field_path(key) + " is " + std::to_string(value.size()) +
                              " bytes, more than " + std::to_string(max_len));
    return false;
  }
  if (!string_is_kind(value, kind)) {
    switch (kind) {
      case StringKind::kSingleLine:
        fail(Errc::kBadValue, field_path(key) + " must not contain control characters");
        break;
      case StringKind::kToken:
        fail(Errc::kBadValue,
             field_path(key) + " must be non-empty and use only A-Z a-z 0-9 . _ : -");
        break;
      case StringKind::kHex64:
        fail(Errc::kBadValue, field_path(key) + " must be 64 lower-case hex digits");
        break;
      case StringKind::kText: break;
    }
    return false;
  }
  return true;
}

std::string JsonFieldReader::str(std::string_view key, std::size_t max_len, StringKind kind) {
  const json* v = find(key, true);
  if (v == nullptr) return {};
  if (!v->is_string()) {
    wrong_type(key, "a string", *v);
    return {};
  }
  const auto& s = v->get_ref<const std::string&>();
  return check_string(s, key, max_len, kind) ? s : std::string{};
}

std::optional<std::string> JsonFieldReader::opt_str(std::string_view key, std::size_t max_len,
                                                    StringKind kind) {
  const json* v = find(key, false);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) {
    wrong_type(key, "a string", *v);
    return std::nullopt;
  }
  const auto& s = v->get_ref<const std::string&>();
  if (!check_string(s, key, max_len, kind)) return std::nullopt;
  return s;
}

std::int64_t JsonFieldReader::integer(std::string_view key, std::int64_t min, std::int64_t max) {
  auto v = opt_integer(key, min, max);
  if (!v && !error_) fail(Errc::kMissingField, "missing field " + field_path(key));
  return v.value_or(0);
}

std::optional<std::int64_t> JsonFieldReader::opt_integer(std::string_view key, std::int64_t min,
                                                         std::int64_t max) {
  const json* v = find(key, false);
  if (v == nullptr) return std::nullopt;
  std::int64_t value = 0;
  if (v->is_number_integer() && !v->is_number_unsigned()) {
    value = v->get<std::int64_t>();
  } else if (v->is_number_unsigned()) {
    const auto u = v->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(max)) {
      fail(Errc::kBadValue, field_path(key) + " is out of range");
      return std::nullopt;
    }
    value = static_cast<std::int64_t>(u);
  } else {
    wrong_type(key, "an integer", *v);
    return std::nullopt;
  }
  if (value < min || value > max) {
    fail(Errc::kBadValue, field_path(key) + " must be between " + std::to_string(min) + " and " +
                              std::to_string(max));
    return std::nullopt;
  }
  return value;
}

double JsonFieldReader::number(std::string_view key, double min, double max) {
  const json* v = find(key, true);
  if (v == nullptr) return 0;
  if (!v->is_number()) {
    wrong_type(key, "a number", *v);
    return 0;
  }
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < min || d > max) {
    fail(Errc::kBadValue, field_path(key) + " is out of range");
    return 0;
  }
  return d;
}

bool JsonFieldReader::boolean(std::string_view key) {
  const json* v = find(key, true);
  if (v == nullptr) return false;
  if (!v->is_boolean()) {
    wrong_type(key, "a boolean", *v);
    return false;
  }
  return v->get<bool>();
}

bool JsonFieldReader::opt_boolean(std::string_view key, bool fallback) {
  const json* v = find(key, false);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) {
    wrong_type(key, "a boolean", *v);
    return fallback;
  }
  return v->get<bool>();
}

std::vector<std::string> JsonFieldReader::str_array(std::string_view key, std::size_t max_items,
                                                    std::size_t max_len, StringKind kind,
                                                    bool required) {
  std::vector<std::string> out;
  const json* v = find(key, required);
  if (v == nullptr) return out;
  if (!v->is_array()) {
    wrong_type(key, "an array", *v);
    return out;
  }
  if (v->size() > max_items) {
    fail(Errc::kTooLarge, field_path(key) + " has " + std::to_string(v->size()) +
                              " items, more than " + std::to_string(max_items));
    return out;
  }
  for (std::size_t i = 0; i < v->size(); ++i) {
    const json& item = (*v)[i];
    const std::string item_key = std::string(key) + "[" + std::to_string(i) + "]";
    if (!item.is_string()) {
      wrong_type(item_key, "a string", item);
      return {};
    }
    const auto& s = item.get_ref<const std::string&>();
    if (!check_string(s, item_key, max_len, kind)) return {};
    out.push_back(s);
  }
  return out;
}

json JsonFieldReader::opt_object(std::string_view key) {
  const json* v = find(key, false);
  if (v == nullptr) return json::object();
  if (!v->is_object()) {
    wrong_type(key, "an object", *v);
    return json::object();
  }
  return *v;
}

std::map<std::string, std::string> JsonFieldReader::str_map(std::string_view key,
                                                            std::size_t max_items,
                                                            std::size_t max_key_len,
                                                            std::size_t max_value_len) {
  std::map<std::string, std::string> out;
  const json* v = find(key, true);
  if (v == nullptr) return out;
  if (!v->is_object()) {
    wrong_type(key, "an object", *v);
    return out;
  }
  if (v->size() > max_items) {
    fail(Errc::kTooLarge,
         field_path(key) + " has more than " + std::to_string(max_items) + " entries");
    return out;
  }
  for (const auto& [k, value] : v->items()) {
    const std::string item_key = std::string(key) + "." + k;
    if (k.size() > max_key_len || !string_is_kind(k, StringKind::kToken)) {
      fail(Errc::kBadValue, field_path(key) + " has an invalid key");
      return {};
    }
    if (!value.is_string()) {
      wrong_type(item_key, "a string", value);
      return {};
    }
    const auto& s = value.get_ref<const std::string&>();
    if (!check_string(s, item_key, max_value_len, StringKind::kSingleLine)) return {};
    out.emplace(k, s);
  }
  return out;
}

}  // namespace tether::protocol
