// Logging for the edges of each program (mains, daemon event handlers). Library code returns
// errors instead of logging. Lines go to stderr with a journald priority prefix ("<6>...") so
// that journald files them at the right level; on a terminal the prefix is replaced by a
// short level word.
#pragma once

#include <string_view>

namespace tether::log {

enum class Level { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

// Lines above `level` are dropped. Default: kInfo.
void set_level(Level level) noexcept;
[[nodiscard]] Level level() noexcept;
// "error", "warning", "notice", "info", "debug"; false for anything else.
[[nodiscard]] bool parse_level(std::string_view text, Level& out) noexcept;

void write(Level level, std::string_view message) noexcept;

inline void error(std::string_view m) noexcept {
  write(Level::kError, m);
}
inline void warning(std::string_view m) noexcept {
  write(Level::kWarning, m);
}
inline void notice(std::string_view m) noexcept {
  write(Level::kNotice, m);
}
inline void info(std::string_view m) noexcept {
  write(Level::kInfo, m);
}
inline void debug(std::string_view m) noexcept {
  write(Level::kDebug, m);
}

}  // namespace tether::log
