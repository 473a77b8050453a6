#include "server/CtlOutput.h"

#include <cstdint>
#include <cstdio>
#include <ctime>

#include "platform/Pki.h"

namespace tether::server {

using json = nlohmann::json;

int fail(const std::string& message, int code) {
  (void)std::fprintf(stderr, "tetherctl: %s\n", message.c_str());
  return code;
}

void print_json(const json& j) {
  std::printf("%s\n", j.dump(2, ' ', false, json::error_handler_t::replace).c_str());
}

std::string text(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  if (it->is_string()) return it->get<std::string>().empty() ? "-" : it->get<std::string>();
  return it->dump();
}

std::string when(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return "-";
  return pki::format_utc(static_cast<std::time_t>(it->get<std::int64_t>()));
}

}  // namespace tether::server
