#include "protocol/LimitedJsonParser.h"

#include <gtest/gtest.h>

namespace tether::protocol {
namespace {

TEST(LimitedJsonParserTest, ParsesOrdinaryDocuments) {
  auto doc = parse_limited_json(R"({"a":[1,2,{"b":"c"}],"d":null,"e":1.5,"f":true})", {});
  ASSERT_TRUE(doc.ok()) << doc.error().message;
  EXPECT_EQ((*doc)["a"][2]["b"], "c");
  EXPECT_EQ((*doc)["e"], 1.5);
  EXPECT_TRUE(parse_limited_json("[]", {}).ok());
  EXPECT_TRUE(parse_limited_json("\"x\"", {}).ok());
}

TEST(LimitedJsonParserTest, RejectsSyntaxErrorsWithOffset) {
  for (const char* text : {"", "{", "{\"a\":}", "[1,]", "{'a':1}", "{\"a\":1} x", "nul",
                           "{\"a\":1,}", "/* c */ {}", "[\"\\x\"]"}) {
    auto doc = parse_limited_json(text, {});
    ASSERT_FALSE(doc.ok()) << text;
    EXPECT_EQ(doc.error().code, Errc::kSyntax) << text;
    EXPECT_NE(doc.error().message.find("at byte"), std::string::npos);
  }
}

TEST(LimitedJsonParserTest, RejectsInvalidUtf8) {
  auto doc = parse_limited_json("[\"\xff\xfe\"]", {});
  ASSERT_FALSE(doc.ok());
  EXPECT_EQ(doc.error().code, Errc::kSyntax);
}

TEST(LimitedJsonParserTest, DepthLimit) {
  JsonLimits limits;
  limits.max_depth = 4;
  EXPECT_TRUE(parse_limited_json("[[[[1]]]]", limits).ok());
  auto doc = parse_limited_json("[[[[[1]]]]]", limits);
  ASSERT_FALSE(doc.ok());
  EXPECT_EQ(doc.error().code, Errc::kTooDeep);
  // 100 000 levels are refused without recursion trouble.
  std::string deep(100000, '[');
  deep += std::string(100000, ']');
  EXPECT_EQ(parse_limited_json(deep, {}).error().code, Errc::kTooDeep);
  std::string deep_obj;
  for (int i = 0; i < 100000; ++i) deep_obj += "{\"a\":";
  EXPECT_EQ(parse_limited_json(deep_obj, {}).error().code, Errc::kTooDeep);
}

TEST(LimitedJsonParserTest, SizeLimits) {
  JsonLimits limits;
  limits.max_bytes = 32;
  EXPECT_EQ(parse_limited_json(std::string(33, ' '), limits).error().code, Errc::kTooLarge);

  limits = {};
  limits.max_string_bytes = 8;
  EXPECT_TRUE(parse_limited_json(R"(["12345678"])", limits).ok());
  EXPECT_EQ(parse_limited_json(R"(["123456789"])", limits).error().code, Errc::kTooLarge);

  limits = {};
  limits.max_key_bytes = 3;
  EXPECT_EQ(parse_limited_json(R"({"abcd":1})", limits).error().code, Errc::kTooLarge);

  limits = {};
  limits.max_array_items = 3;
  EXPECT_TRUE(parse_limited_json("[1,2,3]", limits).ok());
  EXPECT_EQ(parse_limited_json("[1,2,3,4]", limits).error().code, Errc::kTooLarge);

  limits = {};
  limits.max_object_members = 2;
  EXPECT_EQ(parse_limited_json(R"({"a":1,"b":2,"c":3})", limits).error().code, Errc::kTooLarge);

  limits = {};
  limits.max_values = 5;
  EXPECT_EQ(parse_limited_json("[[1,2],[3,4]]", limits).error().code, Errc::kTooLarge);
}

TEST(LimitedJsonParserTest, RejectsDuplicateKeys) {
  auto doc = parse_limited_json(R"({"a":1,"b":{"c":1,"c":2}})", {});
  ASSERT_FALSE(doc.ok());
  EXPECT_EQ(doc.error().code, Errc::kDuplicateKey);
  EXPECT_NE(doc.error().message.find("\"c\""), std::string::npos);
  // The same key in sibling objects is fine.
  EXPECT_TRUE(parse_limited_json(R"([{"a":1},{"a":2}])", {}).ok());
}

TEST(LimitedJsonParserTest, HugeNumbers) {
  EXPECT_EQ(parse_limited_json("[1e400]", {}).error().code, Errc::kBadValue);
  EXPECT_EQ(parse_limited_json("[-1e400]", {}).error().code, Errc::kBadValue);
  auto big = parse_limited_json("[123456789012345678901234567890]", {});
  ASSERT_TRUE(big.ok());  // parsed as a float; field readers reject it where an int is due
  EXPECT_TRUE((*big)[0].is_number_float());
}

}  // namespace
}  // namespace tether::protocol
