#include "agent/AgentMetrics.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <string_view>

#include "common/FileIo.h"
#include "common/Log.h"
#include "common/ProcessMetrics.h"
#include "common/Version.h"

namespace tether::agent {
namespace {

using Samples = std::vector<MetricsRegistry::Sample>;

constexpr std::array<std::string_view, 10> kShadowReasons = {
    "viewer_closed", "admin",        "user",           "policy",
    "vnc_exited",    "tunnel_lost",  "agent_stopping", "server_stopping",
    "peer_timeout",  "device_closed"};

}  // namespace

std::string agent_shadow_reason_label(const std::string& reason) {
  return std::find(kShadowReasons.begin(), kShadowReasons.end(), reason) != kShadowReasons.end()
             ? reason
             : "other";
}

AgentMetrics::AgentMetrics(lws_context* context, AgentMetricsSources sources, WallClock wall_clock)
    : sources_(std::move(sources)),
      wall_clock_(std::move(wall_clock)),
      timer_(context, [this] { tick(); }) {
  up_ = registry_.gauge("tether_agent_channel_up",
                        "1 while the UP channel to the server (or a gateway) is open, else 0.");
  via_gateway_ = registry_.gauge("tether_agent_channel_via_gateway",
                                 "1 while the open UP channel goes through a gateway, else 0.");
  last_connect_ = registry_.gauge(
      "tether_agent_channel_last_connect_time_seconds",
      "When the UP channel last opened (unix seconds); 0 if it has not since the agent started.");
  failures_ = registry_.gauge("tether_agent_channel_consecutive_failures",
                              "Connection attempts that failed in a row (0 once connected).");
  connects_ = registry_.counter("tether_agent_channel_connects_total",
                                "Times the UP channel opened since the agent started.");
  reconnects_ = registry_.counter(
      "tether_agent_channel_reconnects_total",
      "Times the UP channel opened again after an earlier channel of this agent process "
      "(every open but the first).");

  registry_.add_callback(
      "tether_agent_discovery_datagrams_total",
      "Datagrams received on the discovery port (UDP 30005).", MetricType::kCounter, {}, [this] {
        const DiscoveryCounters* c = sources_.discovery ? sources_.discovery() : nullptr;
        return Samples{{{}, c != nullptr ? static_cast<double>(c->received) : 0.0}};
      });
  registry_.add_callback(
      "tether_agent_discovery_replies_total",
      "Probes answered, by probe: scan (UDP and TCP range scans) or online (authenticated "
      "online checks).",
      MetricType::kCounter, {"probe"}, [this] {
        const DiscoveryCounters* c = sources_.discovery ? sources_.discovery() : nullptr;
        return Samples{{{"scan"}, c != nullptr ? static_cast<double>(c->scan_replies) : 0.0},
                       {{"online"}, c != nullptr ? static_cast<double>(c->online_replies) : 0.0}};
      });
  registry_.add_callback(
      "tether_agent_discovery_dropped_total",
      "Discovery datagrams that got no reply, by reason (docs/protocol.md §3).",
      MetricType::kCounter, {"reason"}, [this] {
        const DiscoveryCounters* c = sources_.discovery ? sources_.discovery() : nullptr;
        Samples out;
        for (std::size_t i = 0; i < kDropReasonCount; ++i) {
          out.push_back({{std::string(drop_reason_name(static_cast<DropReason>(i)))},
                         c != nullptr ? static_cast<double>(c->dropped[i]) : 0.0});
        }
        return out;
      });
  registry_.add_callback(
      "tether_agent_registration_requests_total",
      "Registration requests from a scanning server (TCP 30005).", MetricType::kCounter, {},
      [this] {
        const DiscoveryCounters* c = sources_.discovery ? sources_.discovery() : nullptr;
        return Samples{{{}, c != nullptr ? static_cast<double>(c->register_requests) : 0.0}};
      });
  registry_.add_callback_gauge(
      "tether_agent_shadow_sessions_active", "Shadowing sessions running on this device (0 or 1).",
      [this] {
        return sources_.shadow_running ? static_cast<double>(sources_.shadow_running()) : 0.0;
      });
  registry_.add_callback(
      "tether_agent_shadow_sessions_total",
      "Shadowing sessions accepted by this device that have ended, by end reason.",
      MetricType::kCounter, {"reason"}, [this] {
        std::map<std::string, double> by_label;
        const auto* ended = sources_.shadow_ended ? sources_.shadow_ended() : nullptr;
        if (ended != nullptr) {
          for (const auto& [reason, n] : *ended) {
            by_label[agent_shadow_reason_label(reason)] += static_cast<double>(n);
          }
        }
        Samples out;
        for (const auto& [label, n] : by_label) out.push_back({{label}, n});
        return out;
      });

  const double started = static_cast<double>(now());
  registry_.add_callback_gauge("tether_agent_start_time_seconds",
                               "When this agent process started (unix seconds).",
                               [started] { return started; });
  registry_.add_callback_gauge("tether_agent_resident_memory_bytes",
                               "Resident memory of the agent process in bytes.", [] {
                                 auto facts = read_process_facts();
                                 return facts ? facts->resident_memory_bytes : 0.0;
                               });
  registry_.add_callback_gauge("tether_agent_open_fds",
                               "Open file descriptors of the agent process.", [] {
                                 auto facts = read_process_facts();
                                 return facts ? facts->open_fds : 0.0;
                               });
  registry_
      .gauge_family("tether_agent_build_info", "The tether-agent version (always 1).", {"version"})
      .with({kVersion})
      .set(1);
}

std::int64_t AgentMetrics::now() const {
  return wall_clock_ ? wall_clock_() : static_cast<std::int64_t>(std::time(nullptr));
}

void AgentMetrics::configure(const std::string& path, std::chrono::milliseconds interval) {
  path_ = path;
  interval_ = interval;
  timer_.cancel();
  if (path_.empty()) return;
  tick();
}

void AgentMetrics::tick() {
  if (path_.empty()) return;
  if (auto written = write(); !written.ok()) {
    if (written.error().message != last_error_) {
      log::warning("cannot write the metrics file: " + written.error().message);
    }
    last_error_ = written.error().message;
  } else {
    last_error_.clear();
  }
  timer_.schedule(interval_);
}

void AgentMetrics::on_channel(const ChannelStatus& status) {
  const bool connected = status.state == ChannelState::kConnected;
  if (connected && !connected_) {
    if (connects_.value() > 0) reconnects_.inc();
    connects_.inc();
    last_connect_.set(static_cast<double>(status.since != 0 ? status.since : now()));
  }
  connected_ = connected;
  up_.set(connected ? 1 : 0);
  via_gateway_.set(connected && status.via_gateway ? 1 : 0);
  failures_.set(static_cast<double>(status.failures));
  if (!path_.empty()) tick();
}

Status AgentMetrics::write() {
  if (path_.empty()) return {};
  // 0644: node_exporter runs as a user of its own; nothing here is secret.
  return write_file_replace(path_, registry_.render(), 0644);
}

}  // namespace tether::agent
