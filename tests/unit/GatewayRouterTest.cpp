#include "server/GatewayRouter.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "protocol/GatewayLinkMessage.h"
#include "protocol/UpMessage.h"

namespace tether::server {
namespace {

using nlohmann::json;
using namespace protocol;

struct FakeTransport : UpTransport {
  void send(ConnectionId c, std::string text) override { sent.emplace_back(c, std::move(text)); }
  void close(ConnectionId c, int code, const std::string&) override {
    closed.emplace_back(c, code);
  }
  std::vector<std::pair<ConnectionId, std::string>> sent;
  std::vector<std::pair<ConnectionId, int>> closed;

  // Link messages sent on `link`, decoded.
  std::vector<LinkMessage> on_link(ConnectionId link) const {
    std::vector<LinkMessage> out;
    for (const auto& [c, text] : sent) {
      if (c != link) continue;
      auto m = decode_link_message(text);
      EXPECT_TRUE(m.ok()) << text;
      if (m.ok()) out.push_back(*m);
    }
    return out;
  }
  // gateway_status values sent to device channel `c`, in order.
  std::vector<std::string> statuses(ConnectionId c) const {
    std::vector<std::string> out;
    for (const auto& [to, text] : sent) {
      if (to != c) continue;
      auto j = json::parse(text);
      if (j["type"] == "gateway_status") out.push_back(j["body"]["server"]);
    }
    return out;
  }
};

const std::string kA(64, 'a');
const std::string kB(64, 'b');
constexpr ConnectionId kLink = 100;

class GatewayRouterTest : public ::testing::Test {
 protected:
  GatewayRouterTest() : router_(transport_, settings()) {}
  static GatewayRouterSettings settings() {
    GatewayRouterSettings s;
    s.name = "gw1";
    s.version = "test";
    s.max_connections = 2;
    return s;
  }
  void link_up() { router_.link_sink().on_connected(kLink, "server", "10.0.0.1"); }
  void from_server(const LinkMessage& m) {
    router_.link_sink().on_message(kLink, encode_link_message(m));
  }
  void allow(std::vector<std::string> devices) {
    from_server(LinkAllow{true, true, std::move(devices)});
  }
  void connect(ConnectionId c, const std::string& device) {
    ASSERT_TRUE(router_.device_sink().admit(device, "10.1.0.1").ok());
    router_.device_sink().on_connected(c, device, "10.1.0.1");
  }

  FakeTransport transport_;
  GatewayRouter router_;
};

TEST_F(GatewayRouterTest, BeforeTheFirstListDevicesWaitOnProbation) {
  // The gateway just started: no list yet. Devices get in, hear "unavailable", are not
  // refused (a refusal would send the fleet into its backoff at once).
  connect(7, kA);
  connect(8, std::string(64, 'c'));
  EXPECT_EQ(transport_.statuses(7), std::vector<std::string>{"unavailable"});
  router_.device_sink().on_message(7, R"({"v":1,"type":"hello","id":"d1","body":{}})");
  EXPECT_EQ(router_.counters().dropped_messages, 1u);
  link_up();
  auto link = transport_.on_link(kLink);
  ASSERT_EQ(link.size(), 3u);  // hello, then both channels announced
  EXPECT_TRUE(std::holds_alternative<LinkHello>(link[0]));
  // A list in two chunks counts only once it is done; then the one it does not name goes.
  from_server(LinkAllow{true, false, {kA}});
  EXPECT_TRUE(transport_.closed.empty());
  from_server(LinkAllow{false, true, {kB}});
  EXPECT_TRUE(router_.device_list_loaded());
  EXPECT_EQ(transport_.closed, (std::vector<std::pair<ConnectionId, int>>{{8, kCloseRevoked}}));
  router_.device_sink().on_closed(8);  // what the listener reports after that close
  EXPECT_EQ(std::get<LinkClosed>(transport_.on_link(kLink).back()).conn, 8u);
  EXPECT_TRUE(router_.device_sink().admit(kB, "10.1.0.1").ok());
  auto unknown = router_.device_sink().admit(std::string(64, 'c'), "10.1.0.1");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, Errc::kPermissionDenied);
  EXPECT_EQ(router_.counters().refused_unknown, 1u);
}

TEST_F(GatewayRouterTest, MessagesPassBothWaysUnchanged) {
  link_up();
  allow({kA});
  connect(7, kA);
  auto link = transport_.on_link(kLink);
  ASSERT_EQ(link.size(), 2u);  // hello, connected
  const auto& connected = std::get<LinkConnected>(link[1]);
  EXPECT_EQ(connected.conn, 7u);
  EXPECT_EQ(connected.device, kA);
  EXPECT_EQ(transport_.statuses(7), std::vector<std::string>{"connected"});

  const std::string hello = R"({"v":1,"type":"hello","id":"d1","body":{}})";
  router_.device_sink().on_message(7, hello);
  link = transport_.on_link(kLink);
  ASSERT_EQ(link.size(), 3u);
  EXPECT_EQ(std::get<LinkUp>(link[2]).text, hello);
  EXPECT_EQ(std::get<LinkUp>(link[2]).conn, 7u);

  const std::string answer = R"({"v":1,"type":"result","id":"d1","body":{"ok":true}})";
  from_server(LinkUp{7, answer});
  EXPECT_EQ(transport_.sent.back(), (std::pair<ConnectionId, std::string>{7, answer}));
  // A channel id the gateway does not have gets nothing.
  const auto before = transport_.sent.size();
  from_server(LinkUp{8, answer});
  EXPECT_EQ(transport_.sent.size(), before);

  router_.device_sink().on_closed(7);
  EXPECT_EQ(std::get<LinkClosed>(transport_.on_link(kLink).back()).conn, 7u);
}

TEST_F(GatewayRouterTest, ARevokedDeviceIsDroppedAndRefused) {
  link_up();
  allow({kA, kB});
  connect(7, kA);
  from_server(LinkRevoke{kA});
  EXPECT_EQ(transport_.closed.back(), (std::pair<ConnectionId, int>{7, kCloseRevoked}));
  EXPECT_FALSE(router_.device_sink().admit(kA, "10.1.0.1").ok());
  // A new full list without a device ends its channel too.
  connect(8, kB);
  allow({kA});
  EXPECT_EQ(transport_.closed.back(), (std::pair<ConnectionId, int>{8, kCloseRevoked}));
}

TEST_F(GatewayRouterTest, WithoutALinkChannelsStayAndAreAnnouncedAgain) {
  link_up();
  allow({kA});
  connect(7, kA);
  router_.link_sink().on_closed(kLink);
  EXPECT_FALSE(router_.link_up());
  EXPECT_EQ(transport_.statuses(7), (std::vector<std::string>{"connected", "unavailable"}));
  router_.device_sink().on_message(7, R"({"v":1,"type":"status","id":"d2","body":{}})");
  EXPECT_EQ(router_.counters().dropped_messages, 1u);
  // The list from the last link still admits devices.
  EXPECT_TRUE(router_.device_sink().admit(kA, "10.1.0.1").ok());

  transport_.sent.clear();
  link_up();
  auto link = transport_.on_link(kLink);
  ASSERT_EQ(link.size(), 2u);
  EXPECT_EQ(std::get<LinkHello>(link[0]).devices, 1u);
  EXPECT_EQ(std::get<LinkConnected>(link[1]).conn, 7u);
  EXPECT_EQ(transport_.statuses(7), std::vector<std::string>{"connected"});
}

TEST_F(GatewayRouterTest, TheConnectionLimitRefusesNewDevicesOnly) {
  link_up();
  allow({kA, kB, std::string(64, 'c')});
  connect(7, kA);
  connect(8, kB);
  auto refused = router_.device_sink().admit(std::string(64, 'c'), "10.1.0.9");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("connection limit"), std::string::npos);
  EXPECT_EQ(router_.counters().refused_limit, 1u);
  // A device already connected may come again (it replaces its older channel).
  EXPECT_TRUE(router_.device_sink().admit(kA, "10.1.0.1").ok());
  router_.device_sink().on_connected(9, kA, "10.1.0.1");
  EXPECT_EQ(transport_.closed.back(), (std::pair<ConnectionId, int>{7, kCloseReplaced}));
  EXPECT_EQ(router_.device_count(), 2u);
}

TEST_F(GatewayRouterTest, EnrollmentGoesToTheServerAndItsAnswerComesBack) {
  std::vector<HttpResponse> answers;
  auto respond = [&answers](HttpResponse r) { answers.push_back(std::move(r)); };
  HttpRequest request;
  request.method = "POST";
  request.path = "/api/v1/enroll";
  request.body = R"({"secret":"x"})";
  request.peer_address = "10.1.0.1";
  router_.handle_http(request, respond);  // no link yet
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 503);

  link_up();
  router_.handle_http(request, respond);
  auto http = std::get<LinkHttp>(transport_.on_link(kLink).back());
  EXPECT_EQ(http.body, request.body);
  EXPECT_EQ(http.address, "10.1.0.1");
  from_server(LinkHttpResult{http.id, 201, "application/json", R"({"device_id":"x"})"});
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[1].status, 201);
  EXPECT_EQ(answers[1].body, R"({"device_id":"x"})");

  // Unanswered: 504 after the wait; other paths: 404.
  router_.handle_http(request, respond);
  router_.expire(GatewayRouter::SteadyClock::now() + std::chrono::minutes(5));
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_EQ(answers[2].status, 504);
  request.path = "/api/v1/devices";
  router_.handle_http(request, respond);
  EXPECT_EQ(answers.back().status, 404);
}

TEST_F(GatewayRouterTest, TunnelOpenAndCloseReachTheHooksAndARefusalIsReported) {
  std::vector<std::string> calls;
  router_.set_tunnel_hooks(GatewayRouter::TunnelHooks{
      .open = [&calls](const LinkTunnelOpen& m) -> Status {
        calls.push_back("open " + m.session);
        if (m.session == "bad") return make_error(Errc::kConflict, "duplicate");
        return {};
      },
      .close = [&calls](const std::string& s,
                        const std::string& r) { calls.push_back("close " + s + " " + r); },
  });
  link_up();
  from_server(LinkTunnelOpen{"s1", kA, "t1", "t2", 30});
  from_server(LinkTunnelOpen{"bad", kA, "t1", "t2", 30});
  from_server(LinkTunnelClose{"s1", "admin"});
  EXPECT_EQ(calls, (std::vector<std::string>{"open s1", "open bad", "close s1 admin"}));
  auto event = std::get<LinkTunnelEvent>(transport_.on_link(kLink).back());
  EXPECT_EQ(event.session, "bad");
  EXPECT_EQ(event.event, "ended");
  EXPECT_EQ(event.reason, "refused");
}

TEST_F(GatewayRouterTest, StoppingClosesEveryChannelAsARestart) {
  link_up();
  allow({kA});
  connect(7, kA);
  router_.close_all();
  EXPECT_EQ(transport_.closed, (std::vector<std::pair<ConnectionId, int>>{
                                   {7, kCloseServiceRestart}, {kLink, kCloseServiceRestart}}));
}

}  // namespace
}  // namespace tether::server
