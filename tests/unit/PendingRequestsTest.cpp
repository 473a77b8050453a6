#include "protocol/PendingRequests.h"

#include <gtest/gtest.h>

namespace tether::protocol {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

TEST(PendingRequestsTest, MatchesResultsOnceById) {
  PendingRequests<std::string> pending("d", 8);
  const auto now = Clock::now();
  auto a = pending.add("hello", now + 10s);
  auto b = pending.add("renew", now + 10s);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_EQ(a->front(), 'd');
  EXPECT_EQ(pending.resolve(*b), "renew");
  EXPECT_EQ(pending.resolve(*b), std::nullopt);  // a duplicate result is not matched again
  EXPECT_EQ(pending.resolve("s1"), std::nullopt);
  EXPECT_EQ(pending.size(), 1u);
}

TEST(PendingRequestsTest, ExpiresByDeadline) {
  PendingRequests<int> pending("s", 8);
  const auto now = Clock::now();
  auto early = *pending.add(1, now + 1s);
  auto late = *pending.add(2, now + 5s);
  EXPECT_EQ(pending.next_deadline(), now + 1s);
  auto expired = pending.expire(now + 2s);
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].first, early);
  EXPECT_EQ(expired[0].second, 1);
  EXPECT_EQ(pending.resolve(early), std::nullopt);  // a late result is dropped
  EXPECT_EQ(pending.resolve(late), 2);
  EXPECT_EQ(pending.next_deadline(), std::nullopt);
}

TEST(PendingRequestsTest, BoundedAndDrainable) {
  PendingRequests<int> pending("s", 2);
  const auto now = Clock::now();
  ASSERT_TRUE(pending.add(1, now).ok());
  ASSERT_TRUE(pending.add(2, now).ok());
  auto full = pending.add(3, now);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, Errc::kTooLarge);
  EXPECT_EQ(pending.drain().size(), 2u);
  EXPECT_EQ(pending.size(), 0u);
}

}  // namespace
}  // namespace tether::protocol
