#include "common/Duration.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

namespace tether {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;
using std::chrono::milliseconds;

TEST(DurationTest, ParsesEveryUnit) {
  EXPECT_EQ(*parse_duration("500ms"), 500ms);
  EXPECT_EQ(*parse_duration("30s"), 30s);
  EXPECT_EQ(*parse_duration("5m"), 5min);
  EXPECT_EQ(*parse_duration("5min"), 5min);
  EXPECT_EQ(*parse_duration("2h"), 2h);
  EXPECT_EQ(*parse_duration("1d"), 24h);
  EXPECT_EQ(*parse_duration("0ms"), 0ms);
  EXPECT_EQ(*parse_duration("0"), 0ms);
}

TEST(DurationTest, BareNumberIsSeconds) {
  EXPECT_EQ(*parse_duration("45"), 45s);
  EXPECT_EQ(*parse_duration("007"), 7s);
}

TEST(DurationTest, RejectsMalformedText) {
  for (const char* bad : {"", "s", "ms", "-1s", "+1s", "1.5s", "5 s", " 5s", "5s ", "5S", "5MS",
                          "5sec", "5ss", "5us", "5w", "1e3", "0x10", "five"}) {
    auto r = parse_duration(bad);
    ASSERT_FALSE(r.ok()) << '"' << bad << '"';
    EXPECT_EQ(r.error().code, Errc::kBadValue);
  }
  EXPECT_THAT(parse_duration("soon").error().message, HasSubstr("\"soon\""));
  EXPECT_THAT(parse_duration("soon").error().message, HasSubstr("500ms"));
}

TEST(DurationTest, ErrorQuotesAtMostFortyCharacters) {
  const std::string long_text(200, 'z');
  auto r = parse_duration(long_text);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, HasSubstr(std::string(40, 'z')));
  EXPECT_THAT(r.error().message, ::testing::Not(HasSubstr(std::string(41, 'z'))));
}

TEST(DurationTest, RejectsAbsurdlyLongDurationsWithoutOverflow) {
  // Up to 100 years (of 365 days) is accepted, one more day is not.
  EXPECT_EQ(*parse_duration("36500d"), milliseconds(36500LL * 86'400'000));
  EXPECT_EQ(parse_duration("36501d").error().code, Errc::kBadValue);
  EXPECT_EQ(*parse_duration("876000h"), milliseconds(876000LL * 3'600'000));
  EXPECT_FALSE(parse_duration("876001h").ok());
  EXPECT_EQ(*parse_duration("3153600000000ms"), milliseconds(3153600000000LL));
  EXPECT_FALSE(parse_duration("3153600000001ms").ok());
  // Values whose product with the unit would wrap a 64-bit integer.
  EXPECT_FALSE(parse_duration("18446744073709551615ms").ok());
  EXPECT_FALSE(parse_duration("18446744073709551615d").ok());
  EXPECT_FALSE(parse_duration("213503982334601d").ok());
  // Too many digits even for the integer parser.
  EXPECT_FALSE(parse_duration("99999999999999999999999s").ok());
}

TEST(DurationTest, FormatsTheShortestExactForm) {
  EXPECT_EQ(format_duration(0ms), "0s");
  EXPECT_EQ(format_duration(1ms), "1ms");
  EXPECT_EQ(format_duration(1500ms), "1500ms");
  EXPECT_EQ(format_duration(1s), "1s");
  EXPECT_EQ(format_duration(90s), "90s");
  EXPECT_EQ(format_duration(300000ms), "5m");
  EXPECT_EQ(format_duration(90min), "90m");
  EXPECT_EQ(format_duration(1h), "1h");
  EXPECT_EQ(format_duration(36h), "36h");
  EXPECT_EQ(format_duration(48h), "2d");
}

TEST(DurationTest, FormatThenParseRoundTrips) {
  const std::vector<milliseconds> values = {0ms,
                                            1ms,
                                            999ms,
                                            1000ms,
                                            1001ms,
                                            59s,
                                            60s,
                                            61s,
                                            3599s,
                                            3600s,
                                            86399s,
                                            86400s,
                                            86401s,
                                            milliseconds(86'400'000LL * 365),
                                            milliseconds(123456789)};
  for (const milliseconds d : values) {
    const std::string text = format_duration(d);
    auto back = parse_duration(text);
    ASSERT_TRUE(back.ok()) << text;
    EXPECT_EQ(*back, d) << text;
  }
}

}  // namespace
}  // namespace tether
