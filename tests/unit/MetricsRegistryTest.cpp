#include "common/MetricsRegistry.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "common/ProcessMetrics.h"

namespace tether {
namespace {

TEST(MetricsRegistryTest, RendersCountersAndGaugesWithHelpAndType) {
  MetricsRegistry registry;
  Counter handshakes = registry.counter("tether_handshakes_total", "UP handshakes.");
  Gauge open = registry.gauge("tether_open", "Open things.");
  handshakes.inc();
  handshakes.inc(2);
  open.set(5);
  open.dec();
  EXPECT_EQ(handshakes.value(), 3);
  EXPECT_EQ(registry.render(),
            "# HELP tether_handshakes_total UP handshakes.\n"
            "# TYPE tether_handshakes_total counter\n"
            "tether_handshakes_total 3\n"
            "# HELP tether_open Open things.\n"
            "# TYPE tether_open gauge\n"
            "tether_open 4\n");
  EXPECT_TRUE(registry.problems().empty());
}

TEST(MetricsRegistryTest, CountersNeverGoDown) {
  MetricsRegistry registry;
  Counter c = registry.counter("a_total", "A.");
  c.inc(-5);
  c.inc(0);
  EXPECT_EQ(c.value(), 0);
}

TEST(MetricsRegistryTest, OrdersFamiliesByNameAndSamplesByLabels) {
  MetricsRegistry registry;
  auto refused = registry.counter_family("z_refused_total", "Z.", {"reason"});
  (void)registry.counter("a_total", "A.");
  refused.with({"revoked"}).inc();
  refused.with({"bad_certificate"}).inc(2);
  refused.with({"revoked"}).inc();
  EXPECT_EQ(registry.render(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n"
            "# HELP z_refused_total Z.\n# TYPE z_refused_total counter\n"
            "z_refused_total{reason=\"bad_certificate\"} 2\n"
            "z_refused_total{reason=\"revoked\"} 2\n");
}

TEST(MetricsRegistryTest, EscapesLabelValuesAndHelp) {
  MetricsRegistry registry;
  registry.gauge_family("g", "back\\slash and\nnewline", {"a", "b"})
      .with({"quote\" back\\ nl\n", "plain"})
      .set(1);
  EXPECT_EQ(registry.render(),
            "# HELP g back\\\\slash and\\nnewline\n# TYPE g gauge\n"
            "g{a=\"quote\\\" back\\\\ nl\\n\",b=\"plain\"} 1\n");
}

TEST(MetricsRegistryTest, CallbacksAreReadAtRenderTime) {
  MetricsRegistry registry;
  int connections = 1;
  registry.add_callback_gauge("tether_connections", "Open.", [&] { return connections; });
  registry.add_callback("tether_by_kind_total", "By kind.", MetricType::kCounter, {"kind"}, [] {
    return std::vector<MetricsRegistry::Sample>{{{"up"}, 7}, {{"link"}, 1}};
  });
  connections = 42;
  const std::string text = registry.render();
  EXPECT_NE(text.find("tether_connections 42\n"), std::string::npos) << text;
  // Sorted by label value, whatever order the callback gave.
  EXPECT_LT(text.find("{kind=\"link\"} 1"), text.find("{kind=\"up\"} 7")) << text;
}

TEST(MetricsRegistryTest, RefusesBadRegistrationsWithDetachedHandles) {
  MetricsRegistry registry;
  Counter bad_counter = registry.counter("no_suffix", "x");
  Gauge bad_name = registry.gauge("1starts_with_digit", "x");
  auto bad_label = registry.gauge_family("g", "x", {"__reserved"});
  Counter first = registry.counter("dup_total", "x");
  Counter second = registry.counter("dup_total", "x");
  auto family = registry.counter_family("f_total", "x", {"a"});
  Counter wrong_arity = family.with({"1", "2"});
  bad_counter.inc();
  bad_name.set(3);
  bad_label.with({"v"}).set(1);
  second.inc();
  wrong_arity.inc();
  EXPECT_FALSE(bad_counter.attached());
  EXPECT_FALSE(second.attached());
  EXPECT_FALSE(wrong_arity.attached());
  EXPECT_TRUE(first.attached());
  EXPECT_EQ(registry.problems().size(), 5U);
  EXPECT_EQ(registry.render(),
            "# HELP dup_total x\n# TYPE dup_total counter\ndup_total 0\n"
            "# HELP f_total x\n# TYPE f_total counter\n");
}

TEST(MetricsRegistryTest, DetachedHandlesDoNothing) {
  Counter c;
  Gauge g;
  c.inc();
  g.set(4);
  EXPECT_EQ(c.value(), 0);
  EXPECT_EQ(g.value(), 0);
  MetricsRegistry::Family<Counter> f;
  f.with({"x"}).inc();
}

TEST(MetricsRegistryTest, ResetZeroesStoredSamples) {
  MetricsRegistry registry;
  Counter c = registry.counter("c_total", "x");
  c.inc(9);
  registry.reset();
  EXPECT_EQ(c.value(), 0);
  c.inc();
  EXPECT_EQ(c.value(), 1);
}

TEST(MetricsRegistryTest, FormatsValues) {
  EXPECT_EQ(format_metric_value(0), "0");
  EXPECT_EQ(format_metric_value(-0.0), "0");
  EXPECT_EQ(format_metric_value(123456789012), "123456789012");
  EXPECT_EQ(format_metric_value(0.5), "0.5");
  EXPECT_EQ(format_metric_value(0.1), "0.1");
  EXPECT_EQ(format_metric_value(1e300), "1e+300");
  EXPECT_EQ(format_metric_value(1.0 / 3), "0.3333333333333333");  // shortest round trip
  EXPECT_EQ(format_metric_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_metric_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_metric_value(std::nan("")), "NaN");
}

TEST(MetricsRegistryTest, ValidatesNames) {
  EXPECT_TRUE(valid_metric_name("tether:rule_total"));
  EXPECT_FALSE(valid_metric_name(""));
  EXPECT_FALSE(valid_metric_name("a-b"));
  EXPECT_TRUE(valid_label_name("reason"));
  EXPECT_FALSE(valid_label_name("a:b"));
  EXPECT_FALSE(valid_label_name("__name__"));
}

TEST(ProcessMetricsTest, ParsesProcStat) {
  // A command with a space and a parenthesis; utime 250, stime 150, start 1000 ticks, vsize,
  // rss 10 pages.
  const std::string stat =
      "1234 (tether (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 1 0 1000 "
      "8192000 10 18446744073709551615";
  auto facts = parse_proc_stat(stat, 100, 4096, 1700000000);
  ASSERT_TRUE(facts);
  EXPECT_DOUBLE_EQ(facts->cpu_seconds, 4.0);
  EXPECT_DOUBLE_EQ(facts->start_time_seconds, 1700000010.0);
  EXPECT_DOUBLE_EQ(facts->virtual_memory_bytes, 8192000);
  EXPECT_DOUBLE_EQ(facts->resident_memory_bytes, 40960);
  EXPECT_FALSE(parse_proc_stat("1234 (x) S 1 2", 100, 4096, 0));
}

TEST(ProcessMetricsTest, ReadsThisProcess) {
  auto facts = read_process_facts();
  ASSERT_TRUE(facts);
  EXPECT_GT(facts->resident_memory_bytes, 0);
  EXPECT_GE(facts->open_fds, 3);
  EXPECT_GT(facts->start_time_seconds, 1e9);
  MetricsRegistry registry;
  add_process_metrics(registry, "1.2.3");
  const std::string text = registry.render();
  EXPECT_NE(text.find("tether_build_info{version=\"1.2.3\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("process_open_fds "), std::string::npos);
  EXPECT_TRUE(registry.problems().empty());
}

}  // namespace
}  // namespace tether
