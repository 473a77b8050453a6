// tether-inventory-probe: prints the device inventory exactly as the agent would send it, for
// manual checks and integration tests.
//
//   tether-inventory-probe [--sys DIR] [--proc DIR] [--watch SECONDS]
//
// Prints the inventory body (JSON) on stdout and each warning on stderr. With --watch, then
// watches for changes for that many seconds and prints one JSON line per change:
//   {"change":{"inventory":true,"network":false},"source":"udev"}
// Exit status: 0, or 2 for bad arguments, or 1 if nothing could be watched.
#include <poll.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <optional>

#include "common/CommandLine.h"
#include "common/Log.h"
#include "platform/DeviceWatcher.h"
#include "platform/InventoryCollector.h"
#include "protocol/UpMessage.h"

namespace {

using tether::platform::DeviceChanges;
using tether::platform::DeviceWatcher;

const std::vector<tether::OptionSpec> kOptions = {
    {"sys", 0, true, "DIR", "sysfs root (default /sys)"},
    {"proc", 0, true, "DIR", "procfs root (default /proc)"},
    {"watch", 0, true, "SECONDS", "then print a line per change for this long"},
    {"help", 'h', false, "", "show this help"},
};

int watch(DeviceWatcher& watcher, std::chrono::seconds duration) {
  const auto deadline = std::chrono::steady_clock::now() + duration;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return 0;
    std::vector<pollfd> fds;
    for (int fd : watcher.fds()) fds.push_back({fd, POLLIN, 0});
    const int n = ::poll(fds.data(), fds.size(), static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) {
      tether::log::error(std::string("poll: ") + std::strerror(errno));
      return 1;
    }
    for (const auto& p : fds) {
      if ((p.revents & POLLIN) == 0) continue;
      const DeviceChanges c = watcher.process(p.fd);
      if (!c.inventory && !c.network) continue;
      const nlohmann::json line = {{"change", {{"inventory", c.inventory}, {"network", c.network}}},
                                   {"source", p.fd == watcher.udev_fd() ? "udev" : "rtnetlink"}};
      std::cout << line.dump() << std::endl;  // flushed: a test reads line by line
    }
  }
}

int run(int argc, char** argv) {
  auto args = tether::parse_command_line(argc, argv, kOptions);
  if (!args.ok()) {
    std::cerr << "tether-inventory-probe: " << args.error().message << "\n";
    return 2;
  }
  if (args->has("help")) {
    std::cout << "usage: tether-inventory-probe [--sys DIR] [--proc DIR] [--watch SECONDS]\n"
              << tether::format_options_help(kOptions);
    return 0;
  }
  std::optional<std::chrono::seconds> watch_for;
  if (auto w = args->value("watch")) {
    int seconds = -1;
    try {
      seconds = std::stoi(*w);
    } catch (const std::exception&) {
    }
    if (seconds < 0) {
      std::cerr << "tether-inventory-probe: --watch takes a number of seconds\n";
      return 2;
    }
    watch_for = std::chrono::seconds(seconds);
  }

  // The watcher first, so that a change during the collection is not missed.
  std::optional<DeviceWatcher> watcher;
  if (watch_for) {
    auto opened = DeviceWatcher::open();
    if (!opened.ok()) {
      tether::log::error(opened.error().message);
      return 1;
    }
    watcher.emplace(std::move(opened).value());
    for (const auto& w : watcher->warnings()) tether::log::warning(w);
  }

  tether::platform::InventoryCollector collector(args->value("sys").value_or("/sys"),
                                                 args->value("proc").value_or("/proc"));
  const auto report = collector.collect();
  for (const auto& w : report.warnings) tether::log::warning(w);
  std::cout << tether::protocol::encode_body(tether::protocol::UpBody{report.inventory}).dump(2)
            << std::endl;
  return watcher ? watch(*watcher, *watch_for) : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // out of memory, a closed stdout: say so, not abort
    tether::log::error(std::string("tether-inventory-probe: ") + e.what());
    return 1;
  }
}
