// Password hashes for web app users: PBKDF2-HMAC-SHA256 with a random 16-byte salt, stored as
// "pbkdf2-sha256$ITERATIONS$SALT$HASH" (salt and hash base64url), so that the iteration
// count can be raised later without invalidating stored hashes.
#pragma once

#include <string>
#include <string_view>

#include "common/Result.h"

namespace tether::server {

// OWASP's 2023 figure for PBKDF2-HMAC-SHA256 is 600 000; this is what one login costs the
// single event loop (about a quarter of a second here), rate limited per source.
inline constexpr int kPasswordIterations = 310'000;
inline constexpr std::size_t kMinPasswordLength = 8;
inline constexpr std::size_t kMaxPasswordLength = 1024;

[[nodiscard]] Result<std::string> hash_password(std::string_view password,
                                                int iterations = kPasswordIterations);

// Whether `password` matches `encoded` (compared in constant time). A malformed `encoded`
// never matches; its cost is still paid, so that a caller can use it for unknown users.
[[nodiscard]] bool verify_password(std::string_view password, std::string_view encoded);

// A hash that matches no password: what verify_password runs against for an unknown user,
// so that the answer takes as long as for a known one.
[[nodiscard]] const std::string& decoy_password_hash();

// A strong random password (24 base64url characters, 144 bits).
[[nodiscard]] Result<std::string> random_password();

// Why a password is not acceptable (length), or ok.
[[nodiscard]] Status check_password_policy(std::string_view password);

}  // namespace tether::server
