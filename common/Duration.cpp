#include "common/Duration.h"

#include <charconv>
#include <cstdint>
#include <limits>

namespace tether {

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  auto bad = [&] {
    return make_error(Errc::kBadValue, "\"" + std::string(text.substr(0, 40)) +
                                           "\" is not a duration (like 500ms, 30s, 5m, 2h, 1d)");
  };
  std::uint64_t number = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, number);
  if (ec != std::errc() || ptr == begin) return bad();
  const std::string_view unit(ptr, static_cast<std::size_t>(end - ptr));
  std::uint64_t scale = 0;
  if (unit.empty() || unit == "s")
    scale = 1000;
  else if (unit == "ms")
    scale = 1;
  else if (unit == "m" || unit == "min")
    scale = 60'000;
  else if (unit == "h")
    scale = 3'600'000;
  else if (unit == "d")
    scale = 86'400'000;
  else
    return bad();
  // Beyond ~100 years nothing is meaningful; refusing also keeps the multiply from overflowing.
  constexpr std::uint64_t kMaxMs = 100ULL * 365 * 86'400'000;
  if (number > kMaxMs / scale) return make_error(Errc::kBadValue, "duration too long");
  return std::chrono::milliseconds(static_cast<std::int64_t>(number * scale));
}

std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms == 0) return "0s";
  if (ms % 86'400'000 == 0) return std::to_string(ms / 86'400'000) + "d";
  if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace tether
