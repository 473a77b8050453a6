// Durations in configuration and on command lines: "500ms", "30s", "5m", "2h", "1d", or a
// bare number of seconds.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "common/Result.h"

namespace tether {

[[nodiscard]] Result<std::chrono::milliseconds> parse_duration(std::string_view text);
// The shortest exact form: "90s" -> "90s", 300000ms -> "5m".
[[nodiscard]] std::string format_duration(std::chrono::milliseconds d);

}  // namespace tether
