#include "server/CtlOutput.h"

#include <cstdint>
#include <cstdio>
#include <ctime>

#include "common/Utf8.h"
#include "platform/Pki.h"

namespace tether::server {

using json = nlohmann::json;

namespace {

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
    const std::size_t len = utf8_sequence_length(raw, i);
    if (len == 0 || is_hidden_control(utf8_code_point(raw.substr(i, len)))) {
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
