#include "server/GatewayTunnels.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <tuple>
#include <variant>
#include <vector>

namespace tether::server {
namespace {

constexpr const char* kDeviceA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
constexpr const char* kDeviceB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
constexpr const char* kSession = "sessionAAAAAAAAAAAAAAA";
constexpr const char* kDeviceToken = "dddddddddddddddddddddddddddddddddddddddddd1";
constexpr const char* kViewerToken = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv1";

using Event = std::tuple<std::string, std::string, std::string>;

class FakeTransport : public TunnelTransport {
 public:
  void request_writable(const std::string&, TunnelEnd end) override {
    ++writable[static_cast<int>(end)];
  }
  void set_receiving(const std::string&, TunnelEnd end, bool receiving) override {
    toggles.emplace_back(end, receiving);
  }
  int writable[2] = {0, 0};
  std::vector<std::pair<TunnelEnd, bool>> toggles;
};

GatewayTunnelOpen open_request(const std::string& id = kSession,
                               const std::string& device = kDeviceA) {
  GatewayTunnelOpen o;
  o.session_id = id;
  o.device_id = device;
  o.device_token = kDeviceToken;
  o.viewer_token = kViewerToken;
  o.ttl = std::chrono::seconds(30);
  return o;
}

class GatewayTunnelsTest : public ::testing::Test {
 protected:
  GatewayTunnelsTest() { make(1000, 100); }

  void make(std::size_t max_queued, std::size_t max_sessions) {
    GatewayTunnelsSettings settings;
    settings.max_sessions = max_sessions;
    settings.limits.max_queued = max_queued;
    settings.limits.max_message = 64 * 1024;
    tunnels_ = std::make_unique<GatewayTunnels>(settings);
    tunnels_->set_transport(&transport_);
    tunnels_->on_event = [this](const std::string& s, const std::string& e, const std::string& r) {
      events_.emplace_back(s, e, r);
    };
  }

  // Both ends joined and open.
  void splice(const std::string& id = kSession) {
    ASSERT_TRUE(tunnels_->join(id, TunnelEnd::kDevice, kDeviceToken, kDeviceA).ok());
    tunnels_->opened(id, TunnelEnd::kDevice);
    ASSERT_TRUE(tunnels_->join(id, TunnelEnd::kViewer, kViewerToken, "").ok());
    tunnels_->opened(id, TunnelEnd::kViewer);
  }

  std::vector<std::string> event_names() const {
    std::vector<std::string> out;
    for (const auto& [s, e, r] : events_) out.push_back(e);
    return out;
  }
  std::string ended_reason() const {
    for (const auto& [s, e, r] : events_) {
      if (e == "ended") return r;
    }
    return "";
  }

  FakeTransport transport_;
  std::unique_ptr<GatewayTunnels> tunnels_;
  std::vector<Event> events_;
};

TEST_F(GatewayTunnelsTest, OpenChecksItsValues) {
  EXPECT_TRUE(tunnels_->open(open_request()).ok());
  auto dup = tunnels_->open(open_request());
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, Errc::kAlreadyExists);

  auto bad = open_request("other");
  bad.session_id = "has/slash";
  EXPECT_FALSE(tunnels_->open(bad).ok());
  bad = open_request("other");
  bad.session_id = std::string(41, 'a');
  EXPECT_FALSE(tunnels_->open(bad).ok());
  bad = open_request("other");
  bad.device_id = "AAAA";
  EXPECT_FALSE(tunnels_->open(bad).ok());
  bad = open_request("other");
  bad.device_token = "short";
  EXPECT_FALSE(tunnels_->open(bad).ok());
  bad = open_request("other");
  bad.viewer_token = bad.device_token;
  EXPECT_FALSE(tunnels_->open(bad).ok()) << "the two tokens must differ";
  bad = open_request("other");
  bad.ttl = std::chrono::seconds(0);
  EXPECT_FALSE(tunnels_->open(bad).ok());
  EXPECT_EQ(tunnels_->session_count(), 1u);

  make(1000, 1);
  ASSERT_TRUE(tunnels_->open(open_request()).ok());
  auto over = tunnels_->open(open_request("second"));
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code, Errc::kUnavailable);
  EXPECT_TRUE(events_.empty());
}

TEST_F(GatewayTunnelsTest, TokensAreSingleUseAndBoundToTheirEnd) {
  ASSERT_TRUE(tunnels_->open(open_request()).ok());
  EXPECT_FALSE(tunnels_->check_join(kSession, TunnelEnd::kDevice, "wrong", kDeviceA).ok());
  EXPECT_FALSE(
      tunnels_
          ->check_join(kSession, TunnelEnd::kDevice, std::string(kDeviceToken).substr(1), kDeviceA)
          .ok())
      << "a prefix is not the token";
  EXPECT_FALSE(
      tunnels_->check_join(kSession, TunnelEnd::kDevice, std::string(kDeviceToken) + "x", kDeviceA)
          .ok());
  EXPECT_FALSE(tunnels_->check_join(kSession, TunnelEnd::kDevice, "", kDeviceA).ok());
  EXPECT_FALSE(tunnels_->check_join(kSession, TunnelEnd::kViewer, kDeviceToken, "").ok())
      << "the device token does not open the viewer end";
  EXPECT_FALSE(tunnels_->check_join(kSession, TunnelEnd::kDevice, kViewerToken, kDeviceA).ok());
  EXPECT_FALSE(tunnels_->check_join("nosuch", TunnelEnd::kDevice, kDeviceToken, kDeviceA).ok());
  EXPECT_TRUE(tunnels_->check_join(kSession, TunnelEnd::kDevice, kDeviceToken, kDeviceA).ok());
  EXPECT_TRUE(tunnels_->check_join(kSession, TunnelEnd::kDevice, kDeviceToken, kDeviceA).ok())
      << "checking does not use it";
  EXPECT_TRUE(tunnels_->join(kSession, TunnelEnd::kDevice, kDeviceToken, kDeviceA).ok());
  auto again = tunnels_->join(kSession, TunnelEnd::kDevice, kDeviceToken, kDeviceA);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("used"), std::string::npos) << again.error().message;
  EXPECT_TRUE(tunnels_->join(kSession, TunnelEnd::kViewer, kViewerToken, "").ok());
  EXPECT_FALSE(tunnels_->join(kSession, TunnelEnd::kViewer, kViewerToken, "").ok()) << "used";
}

TEST_F(GatewayTunnelsTest, TheDeviceEndMustBeTheSessionsDevice) {
  ASSERT_TRUE(tunnels_->open(open_request()).ok());
  auto other = tunnels_->check_join(kSession, TunnelEnd::kDevice, kDeviceToken, kDeviceB);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, Errc::kPermissionDenied);
  auto none = tunnels_->join(kSession, TunnelEnd::kDevice, kDeviceToken, "");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, Errc::kPermissionDenied);
  EXPECT_TRUE(tunnels_->join(kSession, TunnelEnd::kDevice, kDeviceToken, kDeviceA).ok())
      << "a refused attempt does not use the token";
  // The viewer end needs no certificate, and a device's does not matter there.
  EXPECT_TRUE(tunnels_->check_join(kSession, TunnelEnd::kViewer, kViewerToken, kDeviceB).ok());
}

TEST_F(GatewayTunnelsTest, RefusesAnyViewerThatSendsAnOrigin) {
  EXPECT_TRUE(tunnels_->viewer_origin_allowed(std::nullopt, "gw.example:8444"));
  EXPECT_FALSE(
      tunnels_->viewer_origin_allowed(std::string("https://gw.example:8444"), "gw.example:8444"))
      << "not even the gateway's own: browsers go through the server";
  EXPECT_FALSE(tunnels_->viewer_origin_allowed(std::string("https://evil.example"), "gw:1"));
  EXPECT_FALSE(tunnels_->viewer_origin_allowed(std::string(""), "gw:1"));
}

TEST_F(GatewayTunnelsTest, EndsJoinInEitherOrderAndSpliceBothWays) {
  for (bool viewer_first : {false, true}) {
    SCOPED_TRACE(viewer_first ? "viewer first" : "device first");
    make(1000, 100);
    events_.clear();
    ASSERT_TRUE(tunnels_->open(open_request()).ok());
    const TunnelEnd first = viewer_first ? TunnelEnd::kViewer : TunnelEnd::kDevice;
    const TunnelEnd second = other_end(first);
    auto join = [&](TunnelEnd end) {
      const bool device = end == TunnelEnd::kDevice;
      ASSERT_TRUE(
          tunnels_
              ->join(kSession, end, device ? kDeviceToken : kViewerToken, device ? kDeviceA : "")
              .ok());
      tunnels_->opened(kSession, end);
    };
    join(first);
    // What the early end says waits for its peer.
    tunnels_->received(kSession, first, "early");
    join(second);
    const std::string first_joined = std::string(tunnel_end_name(first)) + "_joined";
    const std::string second_joined = std::string(tunnel_end_name(second)) + "_joined";
    EXPECT_EQ(event_names(), (std::vector<std::string>{first_joined, second_joined, "spliced"}));
    auto w = tunnels_->take(kSession, second);
    ASSERT_TRUE(std::holds_alternative<TunnelSplice::Write>(w));
    EXPECT_EQ(std::get<TunnelSplice::Write>(w).data, "early");
    tunnels_->received(kSession, second, "back");
    auto b = tunnels_->take(kSession, first);
    ASSERT_TRUE(std::holds_alternative<TunnelSplice::Write>(b));
    EXPECT_EQ(std::get<TunnelSplice::Write>(b).data, "back");
    EXPECT_EQ(tunnels_->bytes_to(kSession, second), 5u);
    EXPECT_EQ(tunnels_->bytes_to(kSession, first), 4u);
  }
}

TEST_F(GatewayTunnelsTest, BackpressurePausesTheSenderAndResumesItWhenDrained) {
  ASSERT_TRUE(tunnels_->open(open_request()).ok());
  splice();
  tunnels_->received(kSession, TunnelEnd::kDevice, std::string(600, 'x'));
  EXPECT_TRUE(transport_.toggles.empty());
  tunnels_->received(kSession, TunnelEnd::kDevice, std::string(600, 'y'));
  ASSERT_EQ(transport_.toggles.size(), 1u) << "above 1000 bytes queued toward the viewer";
  EXPECT_EQ(transport_.toggles[0], std::make_pair(TunnelEnd::kDevice, false));
  EXPECT_GT(transport_.writable[static_cast<int>(TunnelEnd::kViewer)], 0);
  (void)tunnels_->take(kSession, TunnelEnd::kViewer);  // 600 left: not below half yet
  EXPECT_EQ(transport_.toggles.size(), 1u);
  (void)tunnels_->take(kSession, TunnelEnd::kViewer);
  ASSERT_EQ(transport_.toggles.size(), 2u);
  EXPECT_EQ(transport_.toggles[1], std::make_pair(TunnelEnd::kDevice, true));
  EXPECT_EQ(tunnels_->bytes_to(kSession, TunnelEnd::kViewer), 1200u);
}

TEST_F(GatewayTunnelsTest, AnEndLeavingFlushesAndClosesItsPeerAndEndsOnce) {
  ASSERT_TRUE(tunnels_->open(open_request()).ok());
  splice();
  tunnels_->received(kSession, TunnelEnd::kDevice, "last words");
  tunnels_->closed(kSession, TunnelEnd::kDevice);
  auto w = tunnels_->take(kSession, TunnelEnd::kViewer);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Write>(w)) << "what was sent still goes";
  auto c = tunnels_->take(kSession, TunnelEnd::kViewer);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Close>(c));
  EXPECT_EQ(std::get<TunnelSplice::Close>(c).code, 1000);
  EXPECT_EQ(std::get<TunnelSplice::Close>(c).reason, "device_closed");
  EXPECT_TRUE(tunnels_->has_session(kSession)) << "until the viewer end is closed";
  tunnels_->closed(kSession, TunnelEnd::kViewer);
  EXPECT_FALSE(tunnels_->has_session(kSession));
  EXPECT_EQ(event_names(),
            (std::vector<std::string>{"device_joined", "viewer_joined", "spliced", "ended"}));
  EXPECT_EQ(ended_reason(), "device_closed");
  // Nothing more: a later close from the server finds nothing.
  tunnels_->close(kSession, "admin");
  EXPECT_EQ(events_.size(), 4u);
  for (const auto& [s, e, r] : events_) EXPECT_EQ(s, kSession);
}

TEST_F(GatewayTunnelsTest, TheViewerLeavingIsReportedAsViewerClosed) {
  ASSERT_TRUE(tunnels_->open(open_request()).ok());
  splice();
  tunnels_->closed(kSession, TunnelEnd::kViewer);
  tunnels_->closed(kSession, TunnelEnd::kDevice);
  EXPECT_EQ(ended_reason(), "viewer_closed");
  EXPECT_EQ(tunnels_->session_count(), 0u);
}

TEST_F(GatewayTunnelsTest, ATextMessageClosesItsSenderAndEndsTheSession) {
  ASSERT_TRUE(tunnels_->open(open_request()).ok());
  splice();
  tunnels_->received_text(kSession, TunnelEnd::kViewer);
  auto c = tunnels_->take(kSession, TunnelEnd::kViewer);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Close>(c));
  EXPECT_EQ(std::get<TunnelSplice::Close>(c).code, 1003);
  tunnels_->closed(kSession, TunnelEnd::kViewer);
  tunnels_->closed(kSession, TunnelEnd::kDevice);
  EXPECT_EQ(event_names(),
            (std::vector<std::string>{"device_joined", "viewer_joined", "spliced", "ended"}));
  EXPECT_EQ(ended_reason(), "viewer_closed");
}

TEST_F(GatewayTunnelsTest, TtlExpiryClosesTheLoneEndWith4408) {
  ASSERT_TRUE(tunnels_->open(open_request()).ok());
  GatewayTunnelOpen short_lived = open_request("lonely");
  short_lived.ttl = std::chrono::seconds(5);
  ASSERT_TRUE(tunnels_->open(short_lived).ok());
  ASSERT_TRUE(tunnels_->join(kSession, TunnelEnd::kDevice, kDeviceToken, kDeviceA).ok());
  tunnels_->opened(kSession, TunnelEnd::kDevice);
  const auto now = std::chrono::steady_clock::now();
  tunnels_->expire(now);
  EXPECT_EQ(tunnels_->session_count(), 2u);
  tunnels_->expire(now + std::chrono::seconds(10));
  EXPECT_FALSE(tunnels_->has_session("lonely")) << "no end was open: gone at once";
  EXPECT_TRUE(tunnels_->has_session(kSession));
  tunnels_->expire(now + std::chrono::seconds(31));
  auto c = tunnels_->take(kSession, TunnelEnd::kDevice);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Close>(c));
  EXPECT_EQ(std::get<TunnelSplice::Close>(c).code, 4408);
  EXPECT_EQ(std::get<TunnelSplice::Close>(c).reason, "peer did not arrive");
  EXPECT_FALSE(tunnels_->join(kSession, TunnelEnd::kViewer, kViewerToken, "").ok());
  tunnels_->closed(kSession, TunnelEnd::kDevice);
  EXPECT_EQ(tunnels_->session_count(), 0u);
  ASSERT_EQ(events_.size(), 3u);
  EXPECT_EQ(events_[0], Event(kSession, "device_joined", ""));
  EXPECT_EQ(events_[1], Event("lonely", "ended", "timeout"));
  EXPECT_EQ(events_[2], Event(kSession, "ended", "timeout"));
}

TEST_F(GatewayTunnelsTest, ATokenIsRefusedOnceItsTtlHasPassed) {
  GatewayTunnelOpen o = open_request();
  o.ttl = std::chrono::seconds(1);
  ASSERT_TRUE(tunnels_->open(o).ok());
  // Expiry itself runs from the loop's tick; a join after the deadline is refused even before.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the deadline must pass
  auto late = tunnels_->check_join(kSession, TunnelEnd::kViewer, kViewerToken, "");
  ASSERT_FALSE(late.ok());
  EXPECT_NE(late.error().message.find("expired"), std::string::npos) << late.error().message;
}

TEST_F(GatewayTunnelsTest, ASplicedSessionDoesNotExpire) {
  ASSERT_TRUE(tunnels_->open(open_request()).ok());
  splice();
  tunnels_->expire(std::chrono::steady_clock::now() + std::chrono::hours(2));
  EXPECT_TRUE(tunnels_->has_session(kSession));
  EXPECT_EQ(ended_reason(), "");
}

TEST_F(GatewayTunnelsTest, CloseByTheServerFlushesAndUsesItsReason) {
  ASSERT_TRUE(tunnels_->open(open_request()).ok());
  splice();
  tunnels_->received(kSession, TunnelEnd::kDevice, "frame");
  tunnels_->close(kSession, "admin");
  EXPECT_EQ(ended_reason(), "closed_by_server");
  auto w = tunnels_->take(kSession, TunnelEnd::kViewer);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Write>(w));
  auto c = tunnels_->take(kSession, TunnelEnd::kViewer);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Close>(c));
  EXPECT_EQ(std::get<TunnelSplice::Close>(c).code, 1000);
  EXPECT_EQ(std::get<TunnelSplice::Close>(c).reason, "admin");
  auto d = tunnels_->take(kSession, TunnelEnd::kDevice);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Close>(d));
  EXPECT_FALSE(tunnels_->check_join(kSession, TunnelEnd::kViewer, kViewerToken, "").ok());
  tunnels_->closed(kSession, TunnelEnd::kViewer);
  tunnels_->closed(kSession, TunnelEnd::kDevice);
  EXPECT_EQ(tunnels_->session_count(), 0u);
  EXPECT_EQ(event_names(),
            (std::vector<std::string>{"device_joined", "viewer_joined", "spliced", "ended"}))
      << "the ends closing after the server's close add nothing";

  // A session no end has joined yet goes at once.
  events_.clear();
  ASSERT_TRUE(tunnels_->open(open_request("quiet")).ok());
  tunnels_->close("quiet", "peer_timeout");
  EXPECT_EQ(tunnels_->session_count(), 0u);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0], Event("quiet", "ended", "closed_by_server"));
  tunnels_->close("nosuch", "admin");
  EXPECT_EQ(events_.size(), 1u);
}

TEST_F(GatewayTunnelsTest, AnEndArrivingAfterTheSessionEndedIsClosed) {
  ASSERT_TRUE(tunnels_->open(open_request()).ok());
  // Admitted at the upgrade, then the server ends the session before the WebSocket opens.
  ASSERT_TRUE(tunnels_->join(kSession, TunnelEnd::kDevice, kDeviceToken, kDeviceA).ok());
  tunnels_->close(kSession, "admin");
  EXPECT_FALSE(tunnels_->has_session(kSession));
  tunnels_->opened(kSession, TunnelEnd::kDevice);  // finds nothing; the relay closes nothing
  EXPECT_EQ(event_names(), (std::vector<std::string>{"ended"}));
}

TEST_F(GatewayTunnelsTest, StopAllEndsEverySessionAsGatewayStopping) {
  ASSERT_TRUE(tunnels_->open(open_request()).ok());
  ASSERT_TRUE(tunnels_->open(open_request("second", kDeviceB)).ok());
  splice();
  tunnels_->stop_all();
  auto c = tunnels_->take(kSession, TunnelEnd::kViewer);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Close>(c));
  EXPECT_EQ(std::get<TunnelSplice::Close>(c).code, 1001);
  EXPECT_FALSE(tunnels_->has_session("second"));
  tunnels_->closed(kSession, TunnelEnd::kViewer);
  tunnels_->closed(kSession, TunnelEnd::kDevice);
  EXPECT_EQ(tunnels_->session_count(), 0u);
  int ended = 0;
  for (const auto& [s, e, r] : events_) {
    if (e != "ended") continue;
    ++ended;
    EXPECT_EQ(r, "gateway_stopping") << s;
  }
  EXPECT_EQ(ended, 2);
}

TEST_F(GatewayTunnelsTest, AHandlerThatClosesFromAnEventIsSafe) {
  ASSERT_TRUE(tunnels_->open(open_request()).ok());
  tunnels_->on_event = [this](const std::string& s, const std::string& e, const std::string& r) {
    events_.emplace_back(s, e, r);
    if (e == "viewer_joined") tunnels_->close(s, "changed my mind");
  };
  splice();
  EXPECT_EQ(event_names(), (std::vector<std::string>{"device_joined", "viewer_joined", "ended"}))
      << "no spliced after ended";
  tunnels_->closed(kSession, TunnelEnd::kDevice);
  tunnels_->closed(kSession, TunnelEnd::kViewer);
  EXPECT_EQ(tunnels_->session_count(), 0u);
}

}  // namespace
}  // namespace tether::server
