#include "protocol/EnrollmentToken.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/Base64.h"

namespace tether::protocol {
namespace {

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

// Builds a token from raw parts, without the formatter's assumptions.
std::string token_of(std::string_view url, std::string_view fp = kFingerprint,
                     const std::string& secret = secret_of(32)) {
  return "tether1." + b64(url) + "." + std::string(fp) + "." + secret;
}

EnrollmentToken valid_token() {
  return EnrollmentToken{"wss://tether.example:8443", kFingerprint, secret_of(32)};
}

void expect_rejected(const std::string& text, std::string_view why) {
  auto r = parse_enrollment_token(text);
  ASSERT_FALSE(r.ok()) << text;
  EXPECT_EQ(r.error().code, Errc::kBadValue) << text;
  EXPECT_THAT(r.error().message, StartsWith("invalid enrollment token: ")) << text;
  EXPECT_THAT(r.error().message, HasSubstr(why)) << text;
}

// ---------------------------------------------------------------- tokens

TEST(EnrollmentTokenTest, RoundTrips) {
  for (const char* url : {"wss://tether.example:8443", "wss://10.1.2.3:443", "wss://[::1]:9443",
                          "wss://[2001:db8::42]:1", "wss://h:65535"}) {
    EnrollmentToken token{url, kFingerprint, secret_of(32, 0xa7)};
    const std::string text = format_enrollment_token(token);
    auto parsed = parse_enrollment_token(text);
    ASSERT_TRUE(parsed.ok()) << url << ": " << parsed.error().message;
    EXPECT_EQ(*parsed, token) << url;
    EXPECT_EQ(format_enrollment_token(*parsed), text);
  }
}

TEST(EnrollmentTokenTest, FormatHasFourDotSeparatedParts) {
  const std::string text = format_enrollment_token(valid_token());
  EXPECT_THAT(text, StartsWith("tether1."));
  EXPECT_EQ(std::count(text.begin(), text.end(), '.'), 3);
  EXPECT_EQ(text.find_first_of("=+/ "), std::string::npos) << "must survive shells and URLs";
  EXPECT_EQ(text, "tether1." + b64("wss://tether.example:8443") + "." + kFingerprint + "." +
                      secret_of(32));
  EXPECT_EQ(secret_of(32).size(), 43u);
}

TEST(EnrollmentTokenTest, ParseCanonicalisesTheServerUrl) {
  auto no_port = parse_enrollment_token(token_of("wss://tether.example"));
  ASSERT_TRUE(no_port.ok()) << no_port.error().message;
  EXPECT_EQ(no_port->server_url, "wss://tether.example:8443");
  auto slash = parse_enrollment_token(token_of("wss://[::1]:9000/"));
  ASSERT_TRUE(slash.ok()) << slash.error().message;
  EXPECT_EQ(slash->server_url, "wss://[::1]:9000");
  EXPECT_EQ(slash->ca_fingerprint, kFingerprint);
  EXPECT_EQ(slash->secret, secret_of(32));
}

TEST(EnrollmentTokenTest, RejectsWrongPrefix) {
  const std::string good = format_enrollment_token(valid_token());
  const std::string body = good.substr(8);
  for (const std::string& bad :
       {"tether2." + body, "Tether1." + body, "TETHER1." + body, " tether1." + body, body,
        std::string("tether1"), std::string(""), "tether1:" + body}) {
    expect_rejected(bad, "tether1.");
  }
}

TEST(EnrollmentTokenTest, RejectsWrongNumberOfParts) {
  const std::string url = b64("wss://h");
  expect_rejected("tether1.", "too few parts");
  expect_rejected("tether1." + url, "too few parts");
  expect_rejected("tether1." + url + "." + kFingerprint, "too few parts");
  expect_rejected("tether1." + url + "." + kFingerprint + "." + secret_of(32) + ".x",
                  "too many parts");
  expect_rejected("tether1." + url + "." + kFingerprint + "." + secret_of(32) + ".",
                  "too many parts");
  expect_rejected(format_enrollment_token(valid_token()) + "." + secret_of(32), "too many parts");
}

TEST(EnrollmentTokenTest, RejectsOverlongTokens) {
  expect_rejected("tether1." + std::string(2000, 'A'), "too long");
  // A token with a long but legal URL stays well within the limit.
  const std::string host(200, 'a');
  EXPECT_TRUE(parse_enrollment_token(token_of("wss://" + host + ":1")).ok());
}

TEST(EnrollmentTokenTest, RejectsDamagedServerPart) {
  const std::string tail = "." + kFingerprint + "." + secret_of(32);
  for (const std::string& part :
       {std::string("!!!!"), std::string("d3NzOi8vaA=="), std::string("d3NzOi8vaA+"),
        std::string("d3NzO"), b64("wss://h").substr(0, 9) + "z", std::string("")}) {
    auto r = parse_enrollment_token("tether1." + part + tail);
    ASSERT_FALSE(r.ok()) << part;
    EXPECT_EQ(r.error().code, Errc::kBadValue);
    EXPECT_THAT(r.error().message, StartsWith("invalid enrollment token: "));
  }
  expect_rejected("tether1.!!!!" + tail, "server part is damaged");
  expect_rejected("tether1.d3NzOi8vaA==" + tail, "server part is damaged");
}

TEST(EnrollmentTokenTest, RejectsBadServerUrls) {
  for (const char* url :
       {"http://h",      "https://h:8443", "ws://h",      "h:8443",    "wss:/h",
        "wss://h/up",    "wss://h/a/b",    "wss://h?x=1", "wss://h#f", "wss://user@h",
        "wss://u:p@h:1", "wss://",         "wss://:8443", "wss://h:0", "wss://h:65536",
        "wss://h:abc",   "wss://h:",       "wss://[::1",  "wss://::1", "wss://[::1]x"}) {
    expect_rejected(token_of(url), "invalid server URL");
  }
}

TEST(EnrollmentTokenTest, RejectsBadFingerprints) {
  const std::string upper = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef";
  for (const std::string& fp :
       {kFingerprint.substr(1), kFingerprint + "0", upper, kFingerprint.substr(1) + "g",
        std::string(""), std::string(64, ' '), kFingerprint.substr(0, 32)}) {
    expect_rejected(token_of("wss://h", fp), "CA fingerprint part is damaged");
  }
}

TEST(EnrollmentTokenTest, RejectsBadSecrets) {
  const std::string canonical = secret_of(32);
  std::string noncanonical = canonical;
  noncanonical.back() = 'b';  // 32 bytes leave 2 unused bits in the last character
  std::string bad_char = canonical;
  bad_char[5] = '+';
  for (const std::string& secret :
       {secret_of(31), secret_of(33), secret_of(16), std::string(""), canonical + "=", bad_char,
        noncanonical, canonical.substr(0, 42), canonical + "A"}) {
    expect_rejected(token_of("wss://h", kFingerprint, secret), "secret part is damaged");
  }
  EXPECT_TRUE(parse_enrollment_token(token_of("wss://h", kFingerprint, canonical)).ok());
}

// ---------------------------------------------------------------- server URLs

TEST(ServerUrlTest, DefaultsThePort) {
  auto url = parse_server_url("wss://tether.example");
  ASSERT_TRUE(url.ok()) << url.error().message;
  EXPECT_EQ(url->host, "tether.example");
  EXPECT_EQ(url->port, 8443);
  EXPECT_EQ(url->to_string(), "wss://tether.example:8443");
}

TEST(ServerUrlTest, ParsesHostsAndPorts) {
  struct Case {
    const char* text;
    const char* host;
    std::uint16_t port;
    const char* canonical;
  };
  const Case cases[] = {
      {"wss://h:1", "h", 1, "wss://h:1"},
      {"wss://h:65535", "h", 65535, "wss://h:65535"},
      {"wss://h:08443", "h", 8443, "wss://h:8443"},
      {"wss://h/", "h", 8443, "wss://h:8443"},
      {"wss://h:9000/", "h", 9000, "wss://h:9000"},
      {"wss://10.0.0.5", "10.0.0.5", 8443, "wss://10.0.0.5:8443"},
      {"wss://10.0.0.5:443", "10.0.0.5", 443, "wss://10.0.0.5:443"},
      {"wss://a-b.c-d.example", "a-b.c-d.example", 8443, "wss://a-b.c-d.example:8443"},
      {"wss://[::1]", "::1", 8443, "wss://[::1]:8443"},
      {"wss://[::1]:9443", "::1", 9443, "wss://[::1]:9443"},
      {"wss://[2001:db8::1]:1/", "2001:db8::1", 1, "wss://[2001:db8::1]:1"},
      {"wss://[::ffff:10.0.0.1]", "::ffff:10.0.0.1", 8443, "wss://[::ffff:10.0.0.1]:8443"},
  };
  for (const auto& c : cases) {
    auto url = parse_server_url(c.text);
    ASSERT_TRUE(url.ok()) << c.text << ": " << url.error().message;
    EXPECT_EQ(url->host, c.host) << c.text;
    EXPECT_EQ(url->port, c.port) << c.text;
    EXPECT_EQ(url->to_string(), c.canonical) << c.text;
    // The canonical form parses to the same thing.
    auto again = parse_server_url(url->to_string());
    ASSERT_TRUE(again.ok()) << c.text;
    EXPECT_EQ(again->to_string(), c.canonical);
  }
}

TEST(ServerUrlTest, RejectsOtherSchemes) {
  for (const char* text : {"http://h", "https://h", "ws://h", "ftp://h", "h", "//h", "wss:h",
                           "wss:/h", " wss://h", ""}) {
    auto r = parse_server_url(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.error().code, Errc::kBadValue);
    EXPECT_THAT(r.error().message, HasSubstr("wss://")) << text;
  }
}

TEST(ServerUrlTest, RejectsPathsQueriesFragmentsAndUserInfo) {
  for (const char* text : {"wss://h/up", "wss://h:8443/up", "wss://h//", "wss://h/?", "wss://h?a",
                           "wss://h:1?a=b", "wss://h#x", "wss://user@h", "wss://user:pw@h:1",
                           "wss://@h", "wss://h @x", "wss://[::1]/up"}) {
    auto r = parse_server_url(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.error().code, Errc::kBadValue);
    EXPECT_THAT(r.error().message, HasSubstr("invalid server URL")) << text;
  }
}

TEST(ServerUrlTest, RejectsEmptyOrInvalidHosts) {
  for (const char* text :
       {"wss://", "wss:///", "wss://:8443", "wss://[]", "wss://[]:1", "wss://h_x", "wss://h!",
        "wss://h\t", "wss://ho\xc3\xa9st", "wss://h x"}) {
    auto r = parse_server_url(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.error().code, Errc::kBadValue);
  }
  EXPECT_FALSE(parse_server_url("wss://" + std::string(254, 'a')).ok());
  EXPECT_TRUE(parse_server_url("wss://" + std::string(253, 'a')).ok());
}

TEST(ServerUrlTest, RejectsBadPorts) {
  for (const char* text : {"wss://h:0", "wss://h:65536", "wss://h:99999999999", "wss://h:abc",
                           "wss://h:", "wss://h:-1", "wss://h:+1", "wss://h:1a", "wss://h:80:90",
                           "wss://[::1]:0", "wss://[::1]:65536", "wss://[::1]:", "wss://h:/"}) {
    auto r = parse_server_url(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.error().code, Errc::kBadValue);
    EXPECT_THAT(r.error().message, HasSubstr("invalid server URL")) << text;
  }
  EXPECT_THAT(parse_server_url("wss://h:0").error().message, HasSubstr("1-65535"));
}

TEST(ServerUrlTest, Ipv6NeedsWellFormedBrackets) {
  for (const char* text :
       {"wss://[::1", "wss://[::1:8443", "wss://::1", "wss://::1:8443", "wss://[::1]8443",
        "wss://[::1]]:1", "wss://[[::1]]:1", "wss://[::g]", "wss://[fe80::1%eth0]:1"}) {
    auto r = parse_server_url(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.error().code, Errc::kBadValue);
  }
  EXPECT_THAT(parse_server_url("wss://[::1").error().message, HasSubstr("unclosed ["));
}

TEST(ServerUrlTest, BracketsHoldOnlyIpv6Addresses) {
  // Brackets are for IPv6 literals; anything else in them would come out of to_string() as a
  // different (unbracketed) host than the one written.
  for (const char* text : {"wss://[abc]", "wss://[1.2.3.4]:1", "wss://[ffff]", "wss://[1:2]",
                           "wss://[.]", "wss://[:]", "wss://[1::2::3]"}) {
    auto r = parse_server_url(text);
    ASSERT_FALSE(r.ok()) << text << " parsed as " << r->to_string();
    EXPECT_EQ(r.error().code, Errc::kBadValue);
  }
}

TEST(ServerUrlTest, NulBytesAreRefusedEverywhere) {
  // A token's URL part is base64url and may decode to any bytes.
  for (const std::string& text :
       {std::string("wss://[::1\0x]:1", 15), std::string("wss://h\0x:1", 11),
        std::string("wss://h:1\0", 10), std::string("wss://[::1]\0:1", 14)}) {
    auto r = parse_server_url(text);
    ASSERT_FALSE(r.ok()) << r->to_string();
    EXPECT_EQ(r.error().code, Errc::kBadValue);
    expect_rejected(token_of(text), "invalid server URL");
  }
}

TEST(ServerUrlTest, ErrorQuotesTheUrlSafely) {
  auto r = parse_server_url("wss://h\x01\n:1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message.find_first_of("\x01\n"), std::string::npos);
  EXPECT_THAT(r.error().message, HasSubstr("wss://h??:1"));
}

}  // namespace
}  // namespace tether::protocol
