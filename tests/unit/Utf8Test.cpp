#include "common/Utf8.h"

#include <gtest/gtest.h>

#include <string>

namespace tether {
namespace {

TEST(Utf8Test, ValidSequencesHaveTheirLengthAndCodePoint) {
  const std::string text = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";  // a é € 😀
  EXPECT_EQ(utf8_sequence_length(text, 0), 0u);                      // ASCII is not multi-byte
  EXPECT_EQ(utf8_sequence_length(text, 1), 2u);
  EXPECT_EQ(utf8_code_point(std::string_view(text).substr(1, 2)), 0xe9u);
  EXPECT_EQ(utf8_sequence_length(text, 3), 3u);
  EXPECT_EQ(utf8_code_point(std::string_view(text).substr(3, 3)), 0x20acu);
  EXPECT_EQ(utf8_sequence_length(text, 6), 4u);
  EXPECT_EQ(utf8_code_point(std::string_view(text).substr(6, 4)), 0x1f600u);
  EXPECT_EQ(utf8_code_point("\xc2\x9b"), 0x9bu);  // C1 CSI
  EXPECT_EQ(utf8_code_point("\xf4\x8f\xbf\xbf"), 0x10ffffu);
}

TEST(Utf8Test, InvalidSequencesAreZero) {
  for (const std::string bad :
       {"\x80", "\xbf", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf0\x80\x80\xaf",
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\xc3", "\xe2\x82", "\xc3\x28"}) {
    EXPECT_EQ(utf8_sequence_length(bad, 0), 0u) << testing::PrintToString(bad);
  }
  EXPECT_EQ(utf8_sequence_length("", 0), 0u);
  EXPECT_EQ(utf8_sequence_length("\xc3\xa9", 2), 0u);  // past the end
}

}  // namespace
}  // namespace tether
