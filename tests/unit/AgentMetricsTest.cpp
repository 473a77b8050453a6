#include "agent/AgentMetrics.h"

#include <gtest/gtest.h>

#include "TempDir.h"
#include "common/FileIo.h"

namespace tether::agent {
namespace {

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

ChannelStatus channel(ChannelState state, std::int64_t since = 0, bool via_gateway = false) {
  ChannelStatus s;
  s.state = state;
  s.since = since;
  s.via_gateway = via_gateway;
  return s;
}

TEST(AgentMetricsTest, CountsConnectsReconnectsAndReadsTheSources) {
  DiscoveryCounters discovery;
  discovery.received = 5;
  discovery.scan_replies = 2;
  discovery.count(DropReason::kMalformed);
  std::map<std::string, std::uint64_t> ended = {{"viewer_closed", 2}, {"made up", 1}};
  // No file configured: no timer runs, so no loop is needed.
  AgentMetrics metrics(nullptr,
                       AgentMetricsSources{.discovery = [&] { return &discovery; },
                                           .shadow_running = [] { return 1; },
                                           .shadow_ended = [&] { return &ended; }},
                       [] { return std::int64_t{1'700'000'000}; });
  metrics.on_channel(channel(ChannelState::kConnecting));
  metrics.on_channel(channel(ChannelState::kConnected, 1'700'000'100));
  metrics.on_channel(channel(ChannelState::kConnected, 1'700'000'100));  // no change
  metrics.on_channel(channel(ChannelState::kWaiting));
  metrics.on_channel(channel(ChannelState::kConnected, 1'700'000'200, true));

  const std::string text = metrics.render();
  EXPECT_TRUE(has_line(text, "tether_agent_channel_up 1")) << text;
  EXPECT_TRUE(has_line(text, "tether_agent_channel_via_gateway 1")) << text;
  EXPECT_TRUE(has_line(text, "tether_agent_channel_connects_total 2")) << text;
  EXPECT_TRUE(has_line(text, "tether_agent_channel_reconnects_total 1")) << text;
  EXPECT_TRUE(has_line(text, "tether_agent_channel_last_connect_time_seconds 1700000200")) << text;
  EXPECT_TRUE(has_line(text, "tether_agent_discovery_datagrams_total 5")) << text;
  EXPECT_TRUE(has_line(text, "tether_agent_discovery_replies_total{probe=\"scan\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "tether_agent_discovery_dropped_total{reason=\"malformed\"} 1"))
      << text;
  EXPECT_TRUE(has_line(text, "tether_agent_shadow_sessions_active 1")) << text;
  EXPECT_TRUE(has_line(text, "tether_agent_shadow_sessions_total{reason=\"other\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "tether_agent_shadow_sessions_total{reason=\"viewer_closed\"} 2"))
      << text;
  EXPECT_TRUE(has_line(text, "tether_agent_start_time_seconds 1700000000")) << text;
  // node_exporter has process_* of its own: the textfile must not repeat them.
  EXPECT_EQ(text.find("\nprocess_"), std::string::npos) << text;

  metrics.on_channel(channel(ChannelState::kStopped));
  EXPECT_TRUE(has_line(metrics.render(), "tether_agent_channel_up 0"));
  EXPECT_TRUE(metrics.write().ok());  // not configured: nothing to do
}

TEST(AgentMetricsTest, WithoutSourcesEverythingIsZero) {
  AgentMetrics metrics(nullptr, AgentMetricsSources{});
  const std::string text = metrics.render();
  EXPECT_TRUE(has_line(text, "tether_agent_discovery_datagrams_total 0")) << text;
  EXPECT_TRUE(has_line(text, "tether_agent_shadow_sessions_active 0")) << text;
  EXPECT_TRUE(has_line(text, "tether_agent_channel_up 0")) << text;
}

}  // namespace
}  // namespace tether::agent
