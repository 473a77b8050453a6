#include "server/CtlOutput.h"

#include <cstdint>
#include <cstdio>
#include <ctime>

#include "platform/Pki.h"

namespace tether::server {

using json = nlohmann::json;

namespace {

// The length of the valid UTF-8 sequence at s[i] (no overlongs, surrogates or > U+10FFFF),
// or 0.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = at(i);
  std::size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    len = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    len = 3;
    if (b0 == 0xe0) lo = 0xa0;
    if (b0 == 0xed) hi = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    len = 4;
    if (b0 == 0xf0) lo = 0x90;
    if (b0 == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (i + len > s.size() || at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < len; ++k) {
    if (at(i + k) < 0x80 || at(i + k) > 0xbf) return 0;
  }
  return len;
}

std::uint32_t code_point(std::string_view seq) {
  const auto b = [&](std::size_t k) { return static_cast<std::uint32_t>(seq[k]) & 0xffu; };
  if (seq.size() == 2) return ((b(0) & 0x1f) << 6) | (b(1) & 0x3f);
  if (seq.size() == 3) return ((b(0) & 0x0f) << 12) | ((b(1) & 0x3f) << 6) | (b(2) & 0x3f);
  return ((b(0) & 0x07) << 18) | ((b(1) & 0x3f) << 12) | ((b(2) & 0x3f) << 6) | (b(3) & 0x3f);
}

bool is_hidden_control(std::uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || cp == 0x200e || cp == 0x200f ||
         (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

}  // namespace

std::string terminal_text(std::string_view raw, bool keep_newlines) {
  std::string out;
  out.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size();) {
    const auto c = static_cast<unsigned char>(raw[i]);
    if (c < 0x80) {
      const bool control = (c < 0x20 && !(keep_newlines && c == '\n')) || c == 0x7f;
      out.push_back(control ? '?' : static_cast<char>(c));
      ++i;
      continue;
    }
    const std::size_t len = utf8_length(raw, i);
    if (len == 0 || is_hidden_control(code_point(raw.substr(i, len)))) {
      out.push_back('?');
      i += len == 0 ? 1 : len;
      continue;
    }
    out.append(raw.substr(i, len));
    i += len;
  }
  return out;
}

int fail(const std::string& message, int code) {
  (void)std::fprintf(stderr, "tetherctl: %s\n", terminal_text(message, true).c_str());
  return code;
}

void print_json(const json& j) {
  std::printf("%s\n", j.dump(2, ' ', false, json::error_handler_t::replace).c_str());
}

std::string text(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  if (it->is_string()) {
    return it->get<std::string>().empty() ? "-" : terminal_text(it->get<std::string>());
  }
  return it->dump();
}

std::string when(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return "-";
  return pki::format_utc(static_cast<std::time_t>(it->get<std::int64_t>()));
}

}  // namespace tether::server
