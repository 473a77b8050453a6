// Reads typed fields out of a JSON object received from a peer, keeping the first error.
//
// Decoders read every field unconditionally and check `finish()` once; after the first
// error, the remaining reads return defaults, so a decoder reads like the struct it fills.
// Fields this version does not know are ignored (forward compatibility).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/Result.h"

namespace tether::protocol {

// What a string field may contain, beyond its length limit.
enum class StringKind {
  kText,        // any UTF-8 (already validated by the parser)
  kSingleLine,  // no control characters, C0, DEL or C1 (names, versions, hostnames)
  kToken,       // [A-Za-z0-9._:-]+ (ids, enumerations, tokens)
  kHex64,       // exactly 64 lower-case hex digits (SHA-256)
};

class JsonFieldReader {
 public:
  // `path` names the object in error messages, e.g. "body" or "body.nics[2]".
  JsonFieldReader(const nlohmann::json& object, std::string path);

  [[nodiscard]] std::string str(std::string_view key, std::size_t max_len,
                                StringKind kind = StringKind::kSingleLine);
  [[nodiscard]] std::optional<std::string> opt_str(std::string_view key, std::size_t max_len,
                                                   StringKind kind = StringKind::kSingleLine);
  [[nodiscard]] std::int64_t integer(std::string_view key, std::int64_t min, std::int64_t max);
  [[nodiscard]] std::optional<std::int64_t> opt_integer(std::string_view key, std::int64_t min,
                                                        std::int64_t max);
  [[nodiscard]] double number(std::string_view key, double min, double max);
  [[nodiscard]] bool boolean(std::string_view key);
  [[nodiscard]] bool opt_boolean(std::string_view key, bool fallback);
  [[nodiscard]] std::vector<std::string> str_array(std::string_view key, std::size_t max_items,
                                                   std::size_t max_len,
                                                   StringKind kind = StringKind::kSingleLine,
                                                   bool required = false);
  // An object field kept as JSON (free-form data); absent gives an empty object.
  [[nodiscard]] nlohmann::json opt_object(std::string_view key);
  // A map of string to string (settings documents).
  [[nodiscard]] std::map<std::string, std::string> str_map(std::string_view key,
                                                           std::size_t max_items,
                                                           std::size_t max_key_len,
                                                           std::size_t max_value_len);

  // Decodes a nested object with `decode(reader)`; the nested reader's error becomes ours.
  template <typename T>
  [[nodiscard]] T object(std::string_view key, const std::function<T(JsonFieldReader&)>& decode);

  // Decodes an array of objects. `required` false: absent means empty.
  template <typename T>
  [[nodiscard]] std::vector<T> array_of(std::string_view key, std::size_t max_items,
                                        const std::function<T(JsonFieldReader&)>& decode,
                                        bool required = false);

  // Marks a semantic error found by the decoder itself (first error wins).
  void fail(Errc code, std::string message);
  [[nodiscard]] bool failed() const noexcept { return error_.has_value(); }
  [[nodiscard]] Status finish() const;
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  [[nodiscard]] std::string field_path(std::string_view key) const;

 private:
  // The member `key`, or nullptr (setting kMissingField when required).
  const nlohmann::json* find(std::string_view key, bool required);
  bool check_string(const std::string& value, std::string_view key, std::size_t max_len,
                    StringKind kind);
  void wrong_type(std::string_view key, std::string_view expected, const nlohmann::json& got);

  const nlohmann::json& object_;
  std::string path_;
  std::optional<Error> error_;
};

[[nodiscard]] std::string_view json_type_name(const nlohmann::json& value) noexcept;
// Checks a string against a kind; used by encoders' callers as well.
[[nodiscard]] bool string_is_kind(std::string_view value, StringKind kind) noexcept;

template <typename T>
T JsonFieldReader::object(std::string_view key, const std::function<T(JsonFieldReader&)>& decode) {
  const nlohmann::json* value = find(key, true);
  if (value == nullptr) return T{};
  if (!value->is_object()) {
    wrong_type(key, "object", *value);
    return T{};
  }
  JsonFieldReader nested(*value, field_path(key));
  T out = decode(nested);
  if (nested.failed() && !error_) error_ = nested.finish().error();
  return out;
}

template <typename T>
std::vector<T> JsonFieldReader::array_of(std::string_view key, std::size_t max_items,
                                         const std::function<T(JsonFieldReader&)>& decode,
                                         bool required) {
  std::vector<T> out;
  const nlohmann::json* value = find(key, required);
  if (value == nullptr) return out;
  if (!value->is_array()) {
    wrong_type(key, "array", *value);
    return out;
  }
  if (value->size() > max_items) {
    fail(Errc::kTooLarge, field_path(key) + " has " + std::to_string(value->size()) +
                              " items, more than " + std::to_string(max_items));
    return out;
  }
  out.reserve(value->size());
  for (std::size_t i = 0; i < value->size() && !error_; ++i) {
    const std::string item_path = field_path(key) + "[" + std::to_string(i) + "]";
    const nlohmann::json& item = (*value)[i];
    if (!item.is_object()) {
      fail(Errc::kWrongType,
           item_path + " must be an object, not " + std::string(json_type_name(item)));
      break;
    }
    JsonFieldReader nested(item, item_path);
    out.push_back(decode(nested));
    if (nested.failed()) error_ = nested.finish().error();
  }
  return out;
}

}  // namespace tether::protocol
