// base64url without padding (RFC 4648 §5), for tokens that travel in command lines and URLs.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/Result.h"

namespace tether {

[[nodiscard]] std::string base64url_encode(std::span<const std::uint8_t> bytes);
// Rejects padding, whitespace, characters outside the alphabet, and impossible lengths.
[[nodiscard]] Result<std::vector<std::uint8_t>> base64url_decode(std::string_view text);

}  // namespace tether
