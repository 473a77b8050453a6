#include "agent/EndpointList.h"

#include <gtest/gtest.h>

namespace tether::agent {
namespace {

using ms = std::chrono::milliseconds;

EndpointList three() {
  auto list =
      EndpointList::parse("wss://server:8443", "wss://gw1.example:443, wss://gw2.example:4443");
  EXPECT_TRUE(list.ok()) << list.error().message;
  return std::move(list).value();
}

TEST(EndpointListTest, PrimaryFirstThenFallbacksInOrder) {
  auto list = three();
  EXPECT_EQ(list.size(), 3u);
  EXPECT_EQ(list.index(), 0u);
  EXPECT_FALSE(list.on_fallback());
  EXPECT_EQ(list.current().to_string(), "wss://server:8443");
  EXPECT_EQ(list.urls(), (std::vector<std::string>{"wss://server:8443", "wss://gw1.example:443",
                                                   "wss://gw2.example:4443"}));
}

TEST(EndpointListTest, SeparatorsRepeatsAndErrors) {
  auto list = EndpointList::parse("wss://a:1", "  wss://b:2,wss://c:3\twss://a:1 ,, wss://b:2/ ");
  ASSERT_TRUE(list.ok()) << list.error().message;
  EXPECT_EQ(list->urls(), (std::vector<std::string>{"wss://a:1", "wss://b:2", "wss://c:3"}));

  auto alone = EndpointList::parse("wss://a:1", "");
  ASSERT_TRUE(alone.ok());
  EXPECT_EQ(alone->size(), 1u);

  auto bad = EndpointList::parse("wss://a:1", "wss://b:2 https://c:3");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::kBadValue);
  EXPECT_NE(bad.error().message.find("server.fallback_urls"), std::string::npos);
  EXPECT_NE(bad.error().message.find("https://c:3"), std::string::npos);

  auto bad_primary = EndpointList::parse("", "wss://b:2");
  ASSERT_FALSE(bad_primary.ok());
  EXPECT_NE(bad_primary.error().message.find("server.url"), std::string::npos);

  std::string many;
  for (int i = 1; i <= 20; ++i) many += "wss://h" + std::to_string(i) + ":1 ";
  EXPECT_EQ(EndpointList::parse("wss://a:1", many).error().code, Errc::kTooLarge);
}

TEST(EndpointListTest, FailureMovesOnSoonWithinARound) {
  auto list = three();
  ReconnectBackoff backoff(ms(1000), ms(300000), ms(30000), 42);
  for (std::size_t expected : {1u, 2u}) {
    const ms delay = list.failed(backoff);
    EXPECT_EQ(list.index(), expected);
    EXPECT_TRUE(list.on_fallback());
    EXPECT_GE(delay.count(), 0);
    EXPECT_LE(delay, ms(1000));  // small: at most the backoff base
    EXPECT_EQ(backoff.failures(), 0u) << "the backoff grows per round, not per endpoint";
  }
}

TEST(EndpointListTest, AfterTheLastTheRoundStartsOverWithTheBackoff) {
  auto list = three();
  ReconnectBackoff backoff(ms(1000), ms(300000), ms(30000), 7);
  for (unsigned round = 1; round <= 6; ++round) {
    (void)list.failed(backoff);
    (void)list.failed(backoff);
    const ms bound = backoff.current_bound();
    const ms delay = list.failed(backoff);  // the last endpoint failed: wrap around
    EXPECT_EQ(list.index(), 0u);
    EXPECT_FALSE(list.on_fallback());
    EXPECT_LE(delay, bound);
    EXPECT_EQ(backoff.failures(), round);
  }
  EXPECT_EQ(backoff.current_bound(), ms(64000));  // doubled once per round
  // Within a round the delay stays small however long the outage has been.
  for (int i = 0; i < 20; ++i) {
    ReconnectBackoff copy = backoff;
    EXPECT_LE(list.failed(copy), ms(1000));
    list.to_primary();
  }
}

TEST(EndpointListTest, SingleEndpointBehavesAsBefore) {
  auto parsed = EndpointList::parse("wss://only:8443", "");
  ASSERT_TRUE(parsed.ok());
  EndpointList list = std::move(parsed).value();
  ReconnectBackoff backoff(ms(1000), ms(300000), ms(30000), 3);
  (void)list.failed(backoff);
  (void)list.failed(backoff);
  EXPECT_EQ(list.index(), 0u);
  EXPECT_EQ(backoff.failures(), 2u);
  EXPECT_EQ(backoff.current_bound(), ms(4000));
  const ms refused = list.refused(backoff);
  EXPECT_GE(refused, ms(150000));  // the refusal delay: at least half the cap
}

TEST(EndpointListTest, RestartStaysOnTheEndpointAndRefusalMovesOn) {
  auto list = three();
  ReconnectBackoff backoff(ms(1000), ms(300000), ms(20000), 5);
  (void)list.failed(backoff);
  ASSERT_EQ(list.index(), 1u);
  const ms restart = list.restarting(backoff);
  EXPECT_EQ(list.index(), 1u);
  EXPECT_LE(restart, ms(20000));
  EXPECT_LE(list.refused(backoff), ms(1000));
  EXPECT_EQ(list.index(), 2u);
  EXPECT_GE(list.refused(backoff), ms(150000));  // end of the round
  EXPECT_EQ(list.index(), 0u);
}

TEST(EndpointListTest, BackToThePrimaryAfterASuccessfulProbe) {
  auto list = three();
  ReconnectBackoff backoff(ms(1000), ms(300000), ms(30000), 9);
  (void)list.failed(backoff);
  (void)list.failed(backoff);
  ASSERT_EQ(list.index(), 2u);
  list.to_primary();
  EXPECT_EQ(list.index(), 0u);
  EXPECT_EQ(list.current().to_string(), "wss://server:8443");
  // If the primary then fails after all, the next round goes on from there as usual.
  (void)list.failed(backoff);
  EXPECT_EQ(list.index(), 1u);
}

}  // namespace
}  // namespace tether::agent
