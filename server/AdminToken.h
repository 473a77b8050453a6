// The admin API's bearer token: 32 random bytes, base64url, in <state-dir>/admin.token (0600).
#pragma once

#include <string>
#include <string_view>

#include "common/Result.h"

namespace tether::server {

class AdminToken {
 public:
  // Reads the token file, or creates it when it does not exist (`created` tells which).
  // Refuses a file readable by group or others, or one that does not hold a token.
  [[nodiscard]] static Result<AdminToken> load_or_create(const std::string& path, bool& created);
  [[nodiscard]] static AdminToken from_value(std::string value);

  // Constant-time comparison with what a client presented.
  [[nodiscard]] bool matches(std::string_view presented) const noexcept;
  [[nodiscard]] const std::string& value() const noexcept { return value_; }

 private:
  explicit AdminToken(std::string value) : value_(std::move(value)) {}
  std::string value_;
};

}  // namespace tether::server
