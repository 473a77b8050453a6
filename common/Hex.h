// Lower-case hex for fingerprints, device ids and MACs.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/Result.h"

namespace tether {

[[nodiscard]] std::string hex_encode(std::span<const std::uint8_t> bytes);
// Accepts upper and lower case; rejects odd lengths and non-hex characters.
[[nodiscard]] Result<std::vector<std::uint8_t>> hex_decode(std::string_view text);
[[nodiscard]] bool is_lower_hex(std::string_view text) noexcept;

}  // namespace tether
