// The process basics every Tether daemon exposes with its metrics (docs/metrics.md): the
// client libraries' standard process_* names, read from /proc at render time, and
// tether_build_info{version} 1.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/MetricsRegistry.h"

namespace tether {

struct ProcessFacts {
  double resident_memory_bytes = 0;
  double virtual_memory_bytes = 0;
  double cpu_seconds = 0;         // user + system
  double start_time_seconds = 0;  // unix seconds
  double open_fds = 0;
  double max_fds = 0;
};

// This process's facts from /proc/self; nullopt when /proc cannot be read.
[[nodiscard]] std::optional<ProcessFacts> read_process_facts();
// The fields of a /proc/PID/stat line after the command name (parsed here for the tests).
[[nodiscard]] std::optional<ProcessFacts> parse_proc_stat(std::string_view stat,
                                                          long ticks_per_second, long page_size,
                                                          double boot_time);

// process_resident_memory_bytes, process_virtual_memory_bytes, process_cpu_seconds_total,
// process_start_time_seconds, process_open_fds, process_max_fds and tether_build_info.
void add_process_metrics(MetricsRegistry& registry, const std::string& version);

}  // namespace tether
