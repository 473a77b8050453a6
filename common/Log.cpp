#include "common/Log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace tether::log {
namespace {

std::atomic<Level> g_level{Level::kInfo};

bool stderr_is_journal() {
  // systemd sets JOURNAL_STREAM for services whose stderr is the journal; a terminal gets
  // readable words instead of "<6>".
  static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr || !isatty(STDERR_FILENO);
  return journal;
}

const char* word(Level level) {
  switch (level) {
    case Level::kError: return "error: ";
    case Level::kWarning: return "warning: ";
    case Level::kNotice: return "";
    case Level::kInfo: return "";
    case Level::kDebug: return "debug: ";
  }
  return "";
}

}  // namespace

void set_level(Level level) noexcept {
  g_level.store(level);
}
Level level() noexcept {
  return g_level.load();
}

bool parse_level(std::string_view text, Level& out) noexcept {
  if (text == "error")
    out = Level::kError;
  else if (text == "warning")
    out = Level::kWarning;
  else if (text == "notice")
    out = Level::kNotice;
  else if (text == "info")
    out = Level::kInfo;
  else if (text == "debug")
    out = Level::kDebug;
  else
    return false;
  return true;
}

void write(Level lvl, std::string_view message) noexcept {
  if (static_cast<int>(lvl) > static_cast<int>(g_level.load())) return;
  std::string line;
  line.reserve(message.size() + 12);
  if (stderr_is_journal()) {
    line.push_back('<');
    line.push_back(static_cast<char>('0' + static_cast<int>(lvl)));
    line.push_back('>');
  } else {
    line.append(word(lvl));
  }
  // One line per message: embedded newlines would split it into several journal entries.
  // Other control characters (a device's text in a message) must not drive a terminal.
  for (char c : message) {
    const auto u = static_cast<unsigned char>(c);
    line.push_back(c == '\n' ? ' ' : ((u < 0x20 && c != '\t') || u == 0x7f ? '?' : c));
  }
  line.push_back('\n');
  // A single write keeps lines from interleaving with other processes sharing stderr.
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace tether::log
