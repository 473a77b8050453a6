#include "protocol/LimitedJsonParser.h"

#include <cmath>
#include <optional>
#include <string>
#include <vector>

namespace tether::protocol {
namespace {

using json = nlohmann::json;

class LimitedBuilder : public nlohmann::json_sax<json> {
 public:
  LimitedBuilder(json& root, const JsonLimits& limits) : root_(root), limits_(limits) {}

  bool null() override { return add(json(nullptr)); }
  bool boolean(bool v) override { return add(json(v)); }
  bool number_integer(number_integer_t v) override { return add(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return add(json(v)); }
  bool number_float(number_float_t v, const string_t&) override {
    if (!std::isfinite(v)) return fail(Errc::kBadValue, "number out of range");
    return add(json(v));
  }
  bool string(string_t& v) override {
    if (v.size() > limits_.max_string_bytes) {
      return fail(Errc::kTooLarge, "string of " + std::to_string(v.size()) +
                                       " bytes exceeds the limit of " +
                                       std::to_string(limits_.max_string_bytes));
    }
    return add(json(std::move(v)));
  }
  bool binary(binary_t&) override { return fail(Errc::kSyntax, "binary values are not JSON"); }

  bool start_object(std::size_t) override { return open(json::object()); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(json::array()); }
  bool end_array() override { return close(); }

  bool key(string_t& k) override {
    if (k.size() > limits_.max_key_bytes) {
      return fail(Errc::kTooLarge, "object key of " + std::to_string(k.size()) +
                                       " bytes exceeds the limit of " +
                                       std::to_string(limits_.max_key_bytes));
    }
    json& obj = *stack_.back();
    if (obj.contains(k)) return fail(Errc::kDuplicateKey, "duplicate object key \"" + k + "\"");
    if (obj.size() >= limits_.max_object_members) {
      return fail(Errc::kTooLarge, "object has more than " +
                                       std::to_string(limits_.max_object_members) + " members");
    }
    pending_key_ = std::move(k);
    return true;
  }

  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    if (!error_) {
      // nlohmann's message names the token; keep only what follows its "[json.exception...]".
      std::string what = ex.what();
      if (auto at = what.find("] "); at != std::string::npos) what = what.substr(at + 2);
      // out_of_range.406 is a number too large for a double: a bad value, not bad syntax.
      const Errc code = ex.id == 406 ? Errc::kBadValue : Errc::kSyntax;
      error_ = make_error(code, "invalid JSON at byte " + std::to_string(position) + ": " + what);
    }
    return false;
  }

  [[nodiscard]] const std::optional<Error>& error() const { return error_; }

 private:
  bool fail(Errc code, std::string message) {
    if (!error_) error_ = make_error(code, std::move(message));
    return false;
  }

  // Places a value into the current container (or as the root) and returns where it lives.
  json* place(json&& value) {
    if (++values_ > limits_.max_values) {
      fail(Errc::kTooLarge,
           "document has more than " + std::to_string(limits_.max_values) + " values");
      return nullptr;
    }
    if (stack_.empty()) {
      root_ = std::move(value);
      return &root_;
    }
    json& parent = *stack_.back();
    if (parent.is_array()) {
      if (parent.size() >= limits_.max_array_items) {
        fail(Errc::kTooLarge,
             "array has more than " + std::to_string(limits_.max_array_items) + " items");
        return nullptr;
      }
      parent.push_back(std::move(value));
      return &parent.back();
    }
    json& slot = parent[pending_key_];
    slot = std::move(value);
    return &slot;
  }

  bool add(json&& value) { return place(std::move(value)) != nullptr; }

  bool open(json&& container) {
    if (stack_.size() >= limits_.max_depth) {
      return fail(Errc::kTooDeep, "nesting deeper than " + std::to_string(limits_.max_depth));
    }
    json* where = place(std::move(container));
    if (where == nullptr) return false;
    stack_.push_back(where);
    return true;
  }

  bool close() {
    stack_.pop_back();
    return true;
  }

  json& root_;
  const JsonLimits& limits_;
  std::vector<json*> stack_;
  std::string pending_key_;
  std::size_t values_ = 0;
  std::optional<Error> error_;
};

}  // namespace

Result<json> parse_limited_json(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return make_error(Errc::kTooLarge, "message of " + std::to_string(text.size()) +
                                           " bytes exceeds the limit of " +
                                           std::to_string(limits.max_bytes));
  }
  json root;
  LimitedBuilder builder(root, limits);
  const bool ok = json::sax_parse(text.begin(), text.end(), &builder, json::input_format_t::json,
                                  /*strict=*/true, /*ignore_comments=*/false);
  if (!ok || builder.error()) {
    if (builder.error()) return *builder.error();
    return make_error(Errc::kSyntax, "invalid JSON");
  }
  return root;
}

}  // namespace tether::protocol
