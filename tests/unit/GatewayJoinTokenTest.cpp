#include "protocol/GatewayJoinToken.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/Base64.h"

namespace tether::protocol {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kFingerprint = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

std::string secret_of(std::size_t bytes, std::uint8_t fill = 0x5a) {
  return base64url_encode(std::vector<std::uint8_t>(bytes, fill));
}

std::string b64(std::string_view text) {
  return base64url_encode(
      std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

json valid_doc() {
  return {{"v", 1},
          {"n", "branch-1"},
          {"u", "wss://tether.example:8443"},
          {"f", kFingerprint},
          {"s", secret_of(32)}};
}

// A token from a raw document, without the formatter's assumptions.
std::string token_of(const json& doc) {
  return "tether-gw1." + b64(doc.dump());
}

void expect_rejected(const std::string& text, std::string_view why) {
  auto r = parse_gateway_join_token(text);
  ASSERT_FALSE(r.ok()) << text;
  EXPECT_EQ(r.error().code, Errc::kBadValue);
  EXPECT_THAT(r.error().message, StartsWith("invalid gateway join token: "));
  EXPECT_THAT(r.error().message, HasSubstr(std::string(why)));
}

TEST(GatewayJoinTokenTest, FormatThenParseGivesTheSameToken) {
  const GatewayJoinToken token{"branch-1", "wss://tether.example:8443", kFingerprint,
                               secret_of(32)};
  const std::string text = format_gateway_join_token(token);
  EXPECT_THAT(text, StartsWith("tether-gw1."));
  EXPECT_EQ(text.find_first_of(" \n\t+/="), std::string::npos) << "one line, URL-safe";
  auto parsed = parse_gateway_join_token(text);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed, token);
}

TEST(GatewayJoinTokenTest, TheServerUrlMayBeHttpsAndComesOutCanonical) {
  json doc = valid_doc();
  doc["u"] = "https://Tether.example:9443/";
  auto parsed = parse_gateway_join_token(token_of(doc));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->server_url, "wss://Tether.example:9443");
  doc["u"] = "wss://[::1]";
  parsed = parse_gateway_join_token(token_of(doc));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->server_url, "wss://[::1]:8443");
}

TEST(GatewayJoinTokenTest, UnknownFieldsAreIgnored) {
  json doc = valid_doc();
  doc["x"] = "later";
  EXPECT_TRUE(parse_gateway_join_token(token_of(doc)).ok());
}

TEST(GatewayJoinTokenTest, DamagedTokensAreRefusedWithAReason) {
  expect_rejected("", "tether-gw1.");
  expect_rejected("tether1.abc", "tether-gw1.");
  expect_rejected("tether-gw1.", "not a JSON object");
  expect_rejected("tether-gw1.!!!", "base64url");
  expect_rejected("tether-gw1." + b64("[1,2]"), "not a JSON object");
  expect_rejected("tether-gw1." + b64("{\"v\":1"), "not a JSON object");
  expect_rejected("tether-gw1." + std::string(2000, 'A'), "too long");

  json doc = valid_doc();
  doc["v"] = 2;
  expect_rejected(token_of(doc), "v");
  doc = valid_doc();
  doc.erase("s");
  expect_rejected(token_of(doc), "s");
  doc = valid_doc();
  doc["n"] = "Branch";
  expect_rejected(token_of(doc), "gateway name");
  doc["n"] = "";
  expect_rejected(token_of(doc), "n");
  doc["n"] = std::string(33, 'a');
  expect_rejected(token_of(doc), "n");
  doc = valid_doc();
  doc["u"] = "http://tether.example";
  expect_rejected(token_of(doc), "wss://");
  doc["u"] = "wss://tether.example:8443/path";
  expect_rejected(token_of(doc), "no path");
  doc = valid_doc();
  doc["f"] = kFingerprint.substr(1);
  expect_rejected(token_of(doc), "f");
  doc["f"] = std::string(64, 'A');
  expect_rejected(token_of(doc), "f");
  doc = valid_doc();
  doc["s"] = secret_of(31);
  expect_rejected(token_of(doc), "secret");
  doc["s"] = secret_of(32) + "A";
  expect_rejected(token_of(doc), "secret");
  doc["s"] = 5;
  expect_rejected(token_of(doc), "s");
}

TEST(GatewayJoinTokenTest, GatewayNames) {
  EXPECT_TRUE(valid_gateway_name("a"));
  EXPECT_TRUE(valid_gateway_name("branch-office-7"));
  EXPECT_TRUE(valid_gateway_name(std::string(32, 'z')));
  EXPECT_FALSE(valid_gateway_name(""));
  EXPECT_FALSE(valid_gateway_name(std::string(33, 'z')));
  EXPECT_FALSE(valid_gateway_name("Branch"));
  EXPECT_FALSE(valid_gateway_name("a_b"));
  EXPECT_FALSE(valid_gateway_name("a.b"));
  EXPECT_FALSE(valid_gateway_name("a b"));
  EXPECT_FALSE(valid_gateway_name(std::string_view("a\0b", 3)));
}

}  // namespace
}  // namespace tether::protocol
