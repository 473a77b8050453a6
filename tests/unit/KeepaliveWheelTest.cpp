// The keepalive wheel's own logic, without a loop: what a visit decides, which connections a
// visit reaches, and that closed ones leave the wheel. The pings and closes on real
// connections are tested end to end (tests/integration/test_up_channel.py).
#include "server/KeepaliveWheel.h"

#include <gtest/gtest.h>

#include <array>

namespace tether::server {
namespace {

using Verdict = KeepaliveWheel::Verdict;

WsKeepalive heard_at(std::int64_t ms, bool ping_sent = false) {
  WsKeepalive ka{};
  ka.last_heard_ms = ms;
  ka.ping_sent = ping_sent;
  return ka;
}

TEST(KeepaliveWheel, SilenceOfOneIntervalPingsAndOfTwoCloses) {
  constexpr std::int64_t kInterval = 10'000;
  EXPECT_EQ(KeepaliveWheel::judge(heard_at(0), 9'999, kInterval), Verdict::kNothing);
  EXPECT_EQ(KeepaliveWheel::judge(heard_at(0), 10'000, kInterval), Verdict::kPing);
  // One ping per silence: the next visits wait for its answer.
  EXPECT_EQ(KeepaliveWheel::judge(heard_at(0, true), 15'000, kInterval), Verdict::kNothing);
  EXPECT_EQ(KeepaliveWheel::judge(heard_at(0, true), 19'999, kInterval), Verdict::kNothing);
  EXPECT_EQ(KeepaliveWheel::judge(heard_at(0, true), 20'000, kInterval), Verdict::kClose);
  // Silent that long without a ping (the visits were late): closed all the same.
  EXPECT_EQ(KeepaliveWheel::judge(heard_at(0), 25'000, kInterval), Verdict::kClose);
}

TEST(KeepaliveWheel, VisitsComeEveryQuarterIntervalAndAtLeastEverySecond) {
  EXPECT_EQ(KeepaliveWheel(nullptr, std::chrono::seconds(30)).buckets(), 7u);
  EXPECT_EQ(KeepaliveWheel(nullptr, std::chrono::seconds(8)).buckets(), 2u);
  EXPECT_EQ(KeepaliveWheel(nullptr, std::chrono::seconds(1)).buckets(), 1u);
  EXPECT_EQ(KeepaliveWheel(nullptr, std::chrono::seconds(0)).buckets(), 1u);
}

TEST(KeepaliveWheel, EveryConnectionIsVisitedOncePerRound) {
  KeepaliveWheel wheel(nullptr, std::chrono::seconds(12));  // 3 buckets
  ASSERT_EQ(wheel.buckets(), 3u);
  std::array<WsKeepalive, 7> conns{};
  for (auto& ka : conns) wheel.add(ka, nullptr);
  EXPECT_EQ(wheel.size(), conns.size());
  const std::int64_t silent = KeepaliveWheel::now_ms() + 12'000;
  std::size_t pinged_before = 0;
  for (std::size_t visit = 0; visit < wheel.buckets(); ++visit) {
    wheel.visit_next(silent);
    std::size_t pinged = 0;
    for (const auto& ka : conns) pinged += ka.ping_due ? 1 : 0;
    // Each visit reaches one bucket: some, not all, until the round is complete.
    EXPECT_GT(pinged, pinged_before) << "visit " << visit;
    if (visit + 1 < wheel.buckets()) {
      EXPECT_LT(pinged, conns.size()) << "visit " << visit;
    }
    pinged_before = pinged;
  }
  EXPECT_EQ(pinged_before, conns.size());
  for (const auto& ka : conns) EXPECT_TRUE(ka.ping_sent);
}

TEST(KeepaliveWheel, AnAnswerKeepsAConnectionAndSilenceRemovesIt) {
  KeepaliveWheel wheel(nullptr, std::chrono::seconds(1));  // one bucket: every visit sees all
  WsKeepalive answers{}, silent{};
  wheel.add(answers, nullptr);
  wheel.add(silent, nullptr);
  const std::int64_t t0 = KeepaliveWheel::now_ms();
  wheel.visit_next(t0 + 1'000);
  EXPECT_TRUE(answers.ping_due && silent.ping_due);
  KeepaliveWheel::heard(answers);  // its pong
  EXPECT_FALSE(answers.ping_sent);
  EXPECT_GE(answers.last_heard_ms, t0);
  answers.last_heard_ms = t0 + 1'500;  // as if it came then (heard() reads the real clock)
  wheel.visit_next(t0 + 2'000);
  EXPECT_EQ(wheel.size(), 1u);  // the silent one is out (lws would close it)
  EXPECT_EQ(silent.node.owner, nullptr);
  EXPECT_NE(answers.node.owner, nullptr);
}

TEST(KeepaliveWheel, NobodyIsClosedOnTheFirstVisitAfterTheLoopWasHeldUp) {
  KeepaliveWheel wheel(nullptr, std::chrono::seconds(1));
  WsKeepalive ka{};
  wheel.add(ka, nullptr);
  const std::int64_t t0 = KeepaliveWheel::now_ms();
  wheel.visit_next(t0 + 1'000);  // pinged
  ASSERT_TRUE(ka.ping_sent);
  // The next visit comes 5 s late: the pong may be unread in the socket. Kept...
  wheel.visit_next(t0 + 6'000);
  EXPECT_EQ(wheel.size(), 1u);
  // ...until a visit on time still finds it silent.
  wheel.visit_next(t0 + 7'000);
  EXPECT_EQ(wheel.size(), 0u);
}

TEST(KeepaliveWheel, RemovingIsSafeTwiceAndForNeverAdded) {
  KeepaliveWheel wheel(nullptr, std::chrono::seconds(30));
  WsKeepalive added{}, never{};
  wheel.add(added, nullptr);
  KeepaliveWheel::remove(added);
  KeepaliveWheel::remove(added);
  KeepaliveWheel::remove(never);
  EXPECT_EQ(wheel.size(), 0u);
  wheel.visit_next(KeepaliveWheel::now_ms() + 3'600'000);  // nothing left to visit
}

}  // namespace
}  // namespace tether::server
