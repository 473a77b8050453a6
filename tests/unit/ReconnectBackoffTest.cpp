#include "agent/ReconnectBackoff.h"

#include <gtest/gtest.h>

#include <map>

namespace tether::agent {
namespace {

using ms = std::chrono::milliseconds;

TEST(ReconnectBackoffTest, BoundDoublesUpToTheCap) {
  ReconnectBackoff b(ms(1000), ms(300000), ms(30000), 42);
  std::vector<ms> bounds;
  for (int i = 0; i < 12; ++i) {
    bounds.push_back(b.current_bound());
    const ms d = b.after_failure();
    EXPECT_GE(d.count(), 0);
    EXPECT_LE(d, bounds.back());
  }
  EXPECT_EQ(bounds[0], ms(1000));
  EXPECT_EQ(bounds[1], ms(2000));
  EXPECT_EQ(bounds[5], ms(32000));
  EXPECT_EQ(bounds[9], ms(300000));  // 512 s capped at 300 s
  EXPECT_EQ(bounds[11], ms(300000));
  EXPECT_EQ(b.failures(), 12u);
}

TEST(ReconnectBackoffTest, FullJitterCoversTheWholeRange) {
  // Full jitter: delays are spread over [0, bound], not clustered near the bound.
  ReconnectBackoff b(ms(10000), ms(10000), ms(0), 7);
  int low = 0, high = 0;
  for (int i = 0; i < 2000; ++i) {
    const ms d = b.after_failure();
    ASSERT_LE(d, ms(10000));
    if (d < ms(2500)) ++low;
    if (d > ms(7500)) ++high;
  }
  EXPECT_GT(low, 350);
  EXPECT_GT(high, 350);
}

TEST(ReconnectBackoffTest, ResetStartsOverFromTheBase) {
  ReconnectBackoff b(ms(1000), ms(60000), ms(30000), 1);
  for (int i = 0; i < 5; ++i) (void)b.after_failure();
  EXPECT_EQ(b.current_bound(), ms(32000));
  b.reset();
  EXPECT_EQ(b.current_bound(), ms(1000));
}

TEST(ReconnectBackoffTest, ServerRestartSpreadsOverTheWindowAndResets) {
  ReconnectBackoff b(ms(1000), ms(300000), ms(20000), 3);
  for (int i = 0; i < 6; ++i) (void)b.after_failure();
  std::map<int, int> per_second;
  for (int i = 0; i < 4000; ++i) {
    const ms d = b.after_server_restart();
    ASSERT_LE(d, ms(20000));
    ++per_second[static_cast<int>(d.count() / 1000)];
  }
  EXPECT_EQ(b.failures(), 0u);
  // 4000 draws over 20 one-second buckets: 200 each on average; none near a storm.
  for (const auto& [second, n] : per_second) EXPECT_LT(n, 300) << "second " << second;
  EXPECT_GE(per_second.size(), 20u);  // every second of the window is used
}

TEST(ReconnectBackoffTest, NetworkChangeRetriesSoon) {
  ReconnectBackoff b(ms(1000), ms(300000), ms(30000), 5);
  for (int i = 0; i < 10; ++i) (void)b.after_failure();
  EXPECT_LE(b.after_network_change(), ms(1000));
  EXPECT_EQ(b.failures(), 0u);
}

TEST(ReconnectBackoffTest, RefusalWaitsNearTheCap) {
  ReconnectBackoff b(ms(1000), ms(300000), ms(30000), 11);
  for (int i = 0; i < 100; ++i) {
    const ms d = b.after_refusal();
    EXPECT_GE(d, ms(150000));
    EXPECT_LE(d, ms(300000));
  }
  EXPECT_EQ(b.current_bound(), ms(300000));
}

TEST(ReconnectBackoffTest, SameSeedSameDelays) {
  ReconnectBackoff a(ms(1000), ms(300000), ms(30000), 99);
  ReconnectBackoff b(ms(1000), ms(300000), ms(30000), 99);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(a.after_failure(), b.after_failure());
}

}  // namespace
}  // namespace tether::agent
