#include "platform/SystemdNotifier.h"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <system_error>

namespace tether::platform {

SystemdNotifier::SystemdNotifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");  // NOLINT(concurrency-mt-unsafe)
  enabled_ = socket != nullptr && socket[0] != '\0';
}

Status SystemdNotifier::send(const std::string& state) const {
  if (!enabled_) return ok_status();
  const int r = sd_notify(0, state.c_str());
  if (r < 0) {
    const char* socket = std::getenv("NOTIFY_SOCKET");  // NOLINT(concurrency-mt-unsafe)
    return make_error(Errc::kIo,
                      "sd_notify to NOTIFY_SOCKET=" + std::string(socket != nullptr ? socket : "") +
                          ": " + std::error_code(-r, std::system_category()).message());
  }
  return ok_status();
}

std::string SystemdNotifier::status_line(std::string_view text) {
  std::string line = "STATUS=";
  line.reserve(line.size() + text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    line.push_back(u < 0x20 || u == 0x7f ? ' ' : c);
  }
  return line;
}

Status SystemdNotifier::ready() {
  return send("READY=1");
}

Status SystemdNotifier::status(std::string_view text) {
  if (!enabled_) return ok_status();
  return send(status_line(text));
}

Status SystemdNotifier::stopping() {
  return send("STOPPING=1");
}

Status SystemdNotifier::watchdog() {
  return send("WATCHDOG=1");
}

Status SystemdNotifier::reloading() {
  if (!enabled_) return ok_status();
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const auto usec = static_cast<std::uint64_t>(ts.tv_sec) * 1000000U +
                    static_cast<std::uint64_t>(ts.tv_nsec) / 1000U;
  return send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

std::optional<std::chrono::microseconds> SystemdNotifier::watchdog_interval() const {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0) return std::nullopt;
  // Half the timeout, as sd_watchdog_enabled(3) advises; never 0, which would spin the loop.
  return std::chrono::microseconds(std::max<std::uint64_t>(usec / 2, 1));
}

}  // namespace tether::platform
