#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tether {

// The length (2–4) of the valid multi-byte UTF-8 sequence starting at s[i], or 0 when there
// is none there: ASCII, a stray continuation byte, a truncated sequence, an overlong form, a
// surrogate or a code point above U+10FFFF (RFC 3629).
[[nodiscard]] std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept;

// The code point of one valid multi-byte sequence (as utf8_sequence_length accepted).
[[nodiscard]] std::uint32_t utf8_code_point(std::string_view sequence) noexcept;

}  // namespace tether
