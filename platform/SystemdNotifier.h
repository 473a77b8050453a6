// The service side of systemd's Type=notify protocol (sd_notify(3)): readiness, status
// lines, stopping and reloading, and watchdog keep-alives. Messages go to the datagram socket
// named by NOTIFY_SOCKET; without it (not started by systemd, or tests) every call is a cheap
// no-op that succeeds.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/Result.h"

namespace tether::platform {

class SystemdNotifier {
 public:
  // Reads NOTIFY_SOCKET once. The environment is never unset (unset_environment=0), so a
  // re-exec of the daemon, or a later notifier, still reaches systemd.
  SystemdNotifier();

  // Whether NOTIFY_SOCKET was set when this notifier was made.
  [[nodiscard]] bool enabled() const noexcept { return enabled_; }

  // Each sends one datagram. Errors (kIo) mean the socket could not be reached; the service
  // keeps running, so callers usually log them once and go on.
  [[nodiscard]] Status ready();                        // READY=1
  [[nodiscard]] Status status(std::string_view text);  // STATUS=text, on one line
  [[nodiscard]] Status stopping();                     // STOPPING=1
  [[nodiscard]] Status watchdog();                     // WATCHDOG=1
  // RELOADING=1, with MONOTONIC_USEC= (the reload's start, CLOCK_MONOTONIC) that systemd 253
  // and later require for Type=notify-reload and older versions ignore.
  [[nodiscard]] Status reloading();

  // How often to send watchdog(): half of WATCHDOG_USEC, when sd_watchdog_enabled says the
  // watchdog is on for this process (WATCHDOG_PID unset or our pid); nullopt otherwise.
  [[nodiscard]] std::optional<std::chrono::microseconds> watchdog_interval() const;

  // What status() sends for `text`: newlines and other control characters become spaces,
  // because the protocol is one VARIABLE=value per line.
  [[nodiscard]] static std::string status_line(std::string_view text);

 private:
  Status send(const std::string& state) const;

  bool enabled_ = false;
};

}  // namespace tether::platform
