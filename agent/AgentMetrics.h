// tether-agent's metrics, opt-in (metrics.file, docs/metrics.md): a file in the Prometheus
// text format for node_exporter's textfile collector, rewritten (temp file, rename) when the
// UP channel changes state and every metrics.interval. A file rather than a listening port:
// a thin client stays without a new service to expose and secure, node_exporter is what
// Linux hosts are usually scraped through, and the agent already publishes its state as
// files (status.json, discovery.json). Names all start with tether_agent_ (no process_*:
// node_exporter has its own, a textfile must not repeat them).
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "agent/DiscoveryPolicy.h"
#include "agent/UpClient.h"
#include "common/LwsLoop.h"
#include "common/MetricsRegistry.h"
#include "common/Result.h"

namespace tether::agent {

// What the metrics read from the rest of the agent at each write; each may be empty or
// return null (not running yet).
struct AgentMetricsSources {
  std::function<const DiscoveryCounters*()> discovery;
  std::function<int()> shadow_running;
  std::function<const std::map<std::string, std::uint64_t>*()> shadow_ended;  // by reason
};

class AgentMetrics {
 public:
  using WallClock = std::function<std::int64_t()>;  // unix seconds

  AgentMetrics(lws_context* context, AgentMetricsSources sources, WallClock wall_clock = {});
  AgentMetrics(const AgentMetrics&) = delete;
  AgentMetrics& operator=(const AgentMetrics&) = delete;

  // `path` "" turns the file off (an existing one is left alone); writes at once otherwise
  // and then every `interval`.
  void configure(const std::string& path, std::chrono::milliseconds interval);
  // Every channel status change: counts connects (a change into connected) and rewrites.
  void on_channel(const ChannelStatus& status);
  // Writes the file now (when configured); errors are returned for the caller to log.
  [[nodiscard]] Status write();
  [[nodiscard]] std::string render() const { return registry_.render(); }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  std::int64_t now() const;
  void tick();

  MetricsRegistry registry_;
  AgentMetricsSources sources_;
  WallClock wall_clock_;
  Gauge up_;
  Gauge via_gateway_;
  Gauge last_connect_;
  Gauge failures_;
  Counter connects_;
  Counter reconnects_;
  bool connected_ = false;
  std::string path_;
  std::chrono::milliseconds interval_{15000};
  std::string last_error_;  // the last write error logged (not repeated every interval)
  LwsTimer timer_;
};

// The reason label of an ended shadowing session on the device (docs/metrics.md): the
// protocol's reasons, "other" for anything else.
[[nodiscard]] std::string agent_shadow_reason_label(const std::string& reason);

}  // namespace tether::agent
