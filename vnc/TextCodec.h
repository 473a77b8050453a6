// Clipboard text between RFB and X: RFB's ServerCutText/ClientCutText carry ISO 8859-1
// (Latin-1), the extended clipboard and X's UTF8_STRING carry UTF-8.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tether::vnc {

// Characters above U+00FF and malformed sequences become '?'.
[[nodiscard]] std::string utf8_to_latin1(std::string_view utf8);
[[nodiscard]] std::string latin1_to_utf8(std::string_view latin1);

// The longest prefix of `utf8` of at most max_bytes that does not split a character.
[[nodiscard]] std::string_view utf8_prefix(std::string_view utf8, std::size_t max_bytes) noexcept;

}  // namespace tether::vnc
