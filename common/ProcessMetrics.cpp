#include "common/ProcessMetrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

namespace tether {
namespace {

double boot_time_seconds() {
  std::ifstream in("/proc/stat");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("btime ", 0) == 0) return std::strtod(line.c_str() + 6, nullptr);
  }
  return 0;
}

double count_open_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  double n = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n - 1;  // the directory's own descriptor
}

}  // namespace

std::optional<ProcessFacts> parse_proc_stat(std::string_view stat, long ticks_per_second,
                                            long page_size, double boot_time) {
  // "PID (COMM) STATE ...": the command may hold spaces and parentheses; the last ')' ends it.
  const auto close = stat.rfind(')');
  if (close == std::string_view::npos || ticks_per_second <= 0) return std::nullopt;
  std::istringstream fields{std::string(stat.substr(close + 1))};
  std::vector<std::string> f;
  for (std::string field; fields >> field;) f.push_back(field);
  // Field numbers of proc(5), counting from 3 (state) at index 0.
  constexpr std::size_t kUtime = 14 - 3, kStime = 15 - 3, kStart = 22 - 3, kVsize = 23 - 3,
                        kRss = 24 - 3;
  if (f.size() <= kRss) return std::nullopt;
  const auto num = [&](std::size_t i) { return std::strtod(f[i].c_str(), nullptr); };
  ProcessFacts facts;
  const double ticks = static_cast<double>(ticks_per_second);
  facts.cpu_seconds = (num(kUtime) + num(kStime)) / ticks;
  facts.start_time_seconds = boot_time + num(kStart) / ticks;
  facts.virtual_memory_bytes = num(kVsize);
  facts.resident_memory_bytes = num(kRss) * static_cast<double>(page_size);
  return facts;
}

std::optional<ProcessFacts> read_process_facts() {
  std::ifstream in("/proc/self/stat");
  std::string stat;
  if (!std::getline(in, stat)) return std::nullopt;
  auto facts =
      parse_proc_stat(stat, ::sysconf(_SC_CLK_TCK), ::sysconf(_SC_PAGESIZE), boot_time_seconds());
  if (!facts) return std::nullopt;
  facts->open_fds = count_open_fds();
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    facts->max_fds = static_cast<double>(limit.rlim_cur);
  }
  return facts;
}

void add_process_metrics(MetricsRegistry& registry, const std::string& version) {
  struct Field {
    const char* name;
    const char* help;
    MetricType type;
    double ProcessFacts::*member;
  };
  static const Field kFields[] = {
      {"process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::kGauge,
       &ProcessFacts::resident_memory_bytes},
      {"process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::kGauge,
       &ProcessFacts::virtual_memory_bytes},
      {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
       MetricType::kCounter, &ProcessFacts::cpu_seconds},
      {"process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
       MetricType::kGauge, &ProcessFacts::start_time_seconds},
      {"process_open_fds", "Number of open file descriptors.", MetricType::kGauge,
       &ProcessFacts::open_fds},
      {"process_max_fds", "Maximum number of open file descriptors.", MetricType::kGauge,
       &ProcessFacts::max_fds},
  };
  for (const Field& field : kFields) {
    registry.add_callback(field.name, field.help, field.type, {}, [member = field.member] {
      auto facts = read_process_facts();
      if (!facts) return std::vector<MetricsRegistry::Sample>{};
      return std::vector<MetricsRegistry::Sample>{{{}, (*facts).*member}};
    });
  }
  registry
      .gauge_family("tether_build_info", "The Tether version this process runs (always 1).",
                    {"version"})
      .with({version})
      .set(1);
}

}  // namespace tether
