#include "protocol/GatewayLinkMessage.h"

#include <gtest/gtest.h>

#include <string>

namespace tether::protocol {
namespace {

const std::string kDevice(64, 'a');

template <typename T>
T round_trip(const LinkMessage& m) {
  auto decoded = decode_link_message(encode_link_message(m));
  EXPECT_TRUE(decoded.ok()) << (decoded.ok() ? "" : decoded.error().message);
  EXPECT_TRUE(std::holds_alternative<T>(*decoded));
  return std::get<T>(*decoded);
}

TEST(GatewayLinkMessageTest, EveryTypeRoundTrips) {
  auto hello = round_trip<LinkHello>(LinkHello{"gw1", "0.1.0", 3});
  EXPECT_EQ(hello.gateway, "gw1");
  EXPECT_EQ(hello.devices, 3u);
  auto connected = round_trip<LinkConnected>(LinkConnected{7, kDevice, "10.0.0.5"});
  EXPECT_EQ(connected.conn, 7u);
  EXPECT_EQ(connected.device, kDevice);
  EXPECT_EQ(round_trip<LinkClosed>(LinkClosed{9}).conn, 9u);
  auto up = round_trip<LinkUp>(LinkUp{7, R"({"v":1,"type":"status","id":"d1","body":{}})"});
  EXPECT_EQ(up.text, R"({"v":1,"type":"status","id":"d1","body":{}})");
  auto allow = round_trip<LinkAllow>(LinkAllow{true, false, {kDevice}});
  EXPECT_TRUE(allow.reset);
  EXPECT_FALSE(allow.done);
  EXPECT_EQ(allow.devices.size(), 1u);
  EXPECT_EQ(round_trip<LinkRevoke>(LinkRevoke{kDevice}).device, kDevice);
  auto close = round_trip<LinkClose>(LinkClose{7, 4003, "revoked"});
  EXPECT_EQ(close.code, 4003);
  EXPECT_EQ(close.reason, "revoked");
  auto http = round_trip<LinkHttp>(LinkHttp{1, "POST", "/api/v1/enroll", "{}", "10.0.0.5"});
  EXPECT_EQ(http.path, "/api/v1/enroll");
  auto result = round_trip<LinkHttpResult>(LinkHttpResult{1, 201, "application/json", "{}"});
  EXPECT_EQ(result.status, 201);
  auto open = round_trip<LinkTunnelOpen>(LinkTunnelOpen{"s1", kDevice, "t1", "t2", 30});
  EXPECT_EQ(open.viewer_token, "t2");
  EXPECT_EQ(open.ttl, 30);
  EXPECT_EQ(round_trip<LinkTunnelClose>(LinkTunnelClose{"s1", "admin"}).reason, "admin");
  auto event = round_trip<LinkTunnelEvent>(LinkTunnelEvent{"s1", "ended", "viewer_closed"});
  EXPECT_EQ(event.event, "ended");
}

TEST(GatewayLinkMessageTest, BadInputIsAClearError) {
  const struct {
    const char* text;
    Errc code;
  } cases[] = {
      {"", Errc::kSyntax},
      {"[]", Errc::kSyntax},
      {R"({"v":2,"t":"up","conn":1,"text":""})", Errc::kBadVersion},
      {R"({"v":1,"t":"nonsense"})", Errc::kUnknownType},
      {R"({"v":1,"t":"up","conn":0,"text":""})", Errc::kBadValue},
      {R"({"v":1,"t":"up","conn":1})", Errc::kMissingField},
      {R"({"v":1,"t":"revoke","device":"not-hex"})", Errc::kBadValue},
      {R"({"v":1,"t":"close","conn":1,"code":999})", Errc::kBadValue},
  };
  for (const auto& c : cases) {
    auto decoded = decode_link_message(c.text);
    ASSERT_FALSE(decoded.ok()) << c.text;
    EXPECT_EQ(decoded.error().code, c.code) << c.text << ": " << decoded.error().message;
  }
}

TEST(GatewayLinkMessageTest, AnAllowChunkIsBounded) {
  LinkAllow allow{true, true, std::vector<std::string>(kLinkAllowChunk + 1, kDevice)};
  auto decoded = decode_link_message(encode_link_message(allow));
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.error().code, Errc::kTooLarge);
}

}  // namespace
}  // namespace tether::protocol
