// The relay's outbound end (the server's leg to a gateway's viewer end) against a real
// gateway-side relay: an HttpsServer with a TunnelRelay over GatewayTunnels, on loopback,
// and the leg's client vhost on the same lws context (one loop, as in tether-server).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <thread>

#include "ServerTestSupport.h"
#include "TempDir.h"
#include "common/UniqueFd.h"
#include "server/GatewayTunnels.h"
#include "server/HttpsServer.h"
#include "server/TunnelRelay.h"

namespace tether::server {
namespace {

using namespace std::chrono_literals;
using tether::server::testing::open_ca;
using tether::testing::TempDir;

constexpr const char* kDevice = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
constexpr const char* kSession = "legSessionAAAAAAAAAAAA";
constexpr const char* kDeviceToken = "dddddddddddddddddddddddddddddddddddddddddd1";
constexpr const char* kViewerToken = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv1";

std::uint16_t unused_port() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 0;
  socklen_t len = sizeof addr;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

// The server's side of the leg, as the relay sees it: what ShadowService would be.
class FakeSessions : public TunnelSessions {
 public:
  void set_transport(TunnelTransport* t) override { transport = t; }
  bool viewer_origin_allowed(const std::optional<std::string>&, const std::string&) const override {
    return false;
  }
  Status check_join(const std::string&, TunnelEnd, std::string_view,
                    const std::string&) const override {
    return make_error(Errc::kPermissionDenied, "no inbound ends here");
  }
  Status join(const std::string&, TunnelEnd, std::string_view, const std::string&) override {
    return make_error(Errc::kPermissionDenied, "no inbound ends here");
  }
  void opened(const std::string& s, TunnelEnd end) override {
    log.push_back("opened " + s + " " + tunnel_end_name(end));
  }
  void received(const std::string&, TunnelEnd, std::string_view bytes) override {
    received_bytes += bytes;
  }
  void received_text(const std::string&, TunnelEnd) override { log.push_back("text"); }
  TunnelSplice::Action take(const std::string&, TunnelEnd) override {
    if (!to_write.empty()) {
      TunnelSplice::Write w{to_write.front()};
      to_write.pop_front();
      return w;
    }
    return std::monostate{};
  }
  void closed(const std::string& s, TunnelEnd end) override {
    log.push_back("closed " + s + " " + tunnel_end_name(end));
  }
  void connect_failed(const std::string& s, TunnelEnd, const std::string& why) override {
    log.push_back("failed " + s);
    failure = why;
  }
  bool logged(const std::string& line) const {
    return std::find(log.begin(), log.end(), line) != log.end();
  }
  TunnelTransport* transport = nullptr;
  std::vector<std::string> log;
  std::string received_bytes;
  std::deque<std::string> to_write;
  std::string failure;
};

class TunnelRelayClientTest : public ::testing::Test {
 protected:
  // `names`: what the gateway's certificate is issued for.
  explicit TunnelRelayClientTest(std::vector<std::string> names = {"localhost", "127.0.0.1"})
      : ca_(open_ca(dir_.path(), std::chrono::hours(24), std::move(names))),
        gw_relay_(gw_tunnels_),
        leg_(sessions_) {
    HttpsServerOptions options;
    options.listen = Endpoint{"127.0.0.1", unused_port()};
    options.certificate_path = ca_.server_certificate_path();
    options.key_path = ca_.server_key_path();
    options.client_ca_pems = ca_.trusted_pems();
    port_ = options.listen.port;
    gateway_ = std::make_unique<HttpsServer>(options);
    gateway_->set_tunnel_relay(&gw_relay_);
    const auto started = gateway_->start();
    EXPECT_TRUE(started.ok()) << started.error().message;
    gw_tunnels_.on_event = [this](const std::string&, const std::string& e, const std::string& r) {
      events_.push_back(r.empty() ? e : e + " " + r);
    };
    GatewayTunnelOpen open;
    open.session_id = kSession;
    open.device_id = kDevice;
    open.device_token = kDeviceToken;
    open.viewer_token = kViewerToken;
    EXPECT_TRUE(gw_tunnels_.open(open).ok());
  }
  ~TunnelRelayClientTest() override { gateway_->stop(); }

  Status start_leg(const std::string& ca_path = "") {
    return leg_.start_client(
        gateway_->context(),
        TunnelClientSettings{ca_.link_certificate_path(), ca_.link_key_path(),
                             ca_path.empty() ? ca_.ca_certificate_path() : ca_path});
  }
  std::string viewer_url(const std::string& host, const std::string& token) const {
    return "wss://" + host + ":" + std::to_string(port_) + "/tunnel/viewer/" + kSession +
           "?token=" + token;
  }

  // lws 4.1 ignores a positive service timeout: poll without waiting (at most 10 s).
  template <typename Predicate>
  bool serve_until(Predicate done) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      lws_service(gateway_->context(), -1);
      std::this_thread::sleep_for(2ms);
    }
    return true;
  }

  TempDir dir_;
  CertificateAuthority ca_;
  GatewayTunnels gw_tunnels_;
  TunnelRelay gw_relay_;
  FakeSessions sessions_;
  TunnelRelay leg_;
  std::uint16_t port_ = 0;
  std::unique_ptr<HttpsServer> gateway_;
  std::vector<std::string> events_;
};

TEST_F(TunnelRelayClientTest, TheLegJoinsTheGatewaysViewerEndAndCarriesBytesBothWays) {
  ASSERT_TRUE(start_leg().ok());
  ASSERT_TRUE(leg_.connect_device_end(kSession, viewer_url("127.0.0.1", kViewerToken)).ok());
  ASSERT_TRUE(serve_until([&] {
    return sessions_.logged(std::string("opened ") + kSession + " device");
  })) << (sessions_.log.empty() ? "nothing happened" : sessions_.log.back())
      << " " << sessions_.failure;
  ASSERT_EQ(events_, (std::vector<std::string>{"viewer_joined"}));
  EXPECT_EQ(leg_.client_ends(), 1u);
  EXPECT_EQ(leg_.open_ends(), 1u);

  // Toward the device: the leg writes, the gateway queues it for the device's end.
  sessions_.to_write.push_back("RFB 003.008\n");
  leg_.request_writable(kSession, TunnelEnd::kDevice);
  ASSERT_TRUE(serve_until([&] { return gw_tunnels_.queued(kSession, TunnelEnd::kDevice) == 12; }));

  // From the device (its end joined at the gateway without a socket here).
  ASSERT_TRUE(gw_tunnels_.join(kSession, TunnelEnd::kDevice, kDeviceToken, kDevice).ok());
  gw_tunnels_.opened(kSession, TunnelEnd::kDevice);
  gw_tunnels_.received(kSession, TunnelEnd::kDevice, "RFB 003.008\n\x01\x02");
  ASSERT_TRUE(serve_until([&] { return sessions_.received_bytes.size() == 14; }));
  EXPECT_EQ(sessions_.received_bytes, "RFB 003.008\n\x01\x02");

  // The device leaves: the gateway closes the leg, which the relay reports as its end closing.
  gw_tunnels_.closed(kSession, TunnelEnd::kDevice);
  ASSERT_TRUE(
      serve_until([&] { return sessions_.logged(std::string("closed ") + kSession + " device"); }));
  EXPECT_EQ(events_, (std::vector<std::string>{"viewer_joined", "device_joined", "spliced",
                                               "ended device_closed"}));
  ASSERT_TRUE(serve_until([&] { return !gw_tunnels_.has_session(kSession); }));
  EXPECT_EQ(leg_.client_ends(), 0u);
  EXPECT_EQ(leg_.open_ends(), 0u);
}

TEST_F(TunnelRelayClientTest, AWrongTokenFailsTheLeg) {
  ASSERT_TRUE(start_leg().ok());
  ASSERT_TRUE(
      leg_.connect_device_end(kSession, viewer_url("127.0.0.1", "wrongwrongwrongwrong")).ok());
  ASSERT_TRUE(serve_until([&] { return !sessions_.failure.empty(); }));
  EXPECT_EQ(sessions_.log, (std::vector<std::string>{std::string("failed ") + kSession}));
  std::printf("the gateway's refusal as the leg saw it: %s\n", sessions_.failure.c_str());
  EXPECT_TRUE(events_.empty());
  EXPECT_EQ(leg_.client_ends(), 0u);
  // The token was not used by the refusal.
  EXPECT_TRUE(gw_tunnels_.check_join(kSession, TunnelEnd::kViewer, kViewerToken, "").ok());
}

TEST_F(TunnelRelayClientTest, AGatewayOutsideOurCaOrNameIsRefused) {
  TempDir other_dir;
  CertificateAuthority other = open_ca(other_dir.path());
  ASSERT_TRUE(start_leg(other.ca_certificate_path()).ok());
  ASSERT_TRUE(leg_.connect_device_end(kSession, viewer_url("127.0.0.1", kViewerToken)).ok());
  ASSERT_TRUE(serve_until([&] { return !sessions_.failure.empty(); }));
  std::printf("untrusted gateway: %s\n", sessions_.failure.c_str());
  EXPECT_TRUE(events_.empty()) << "the gateway's certificate did not verify";
}

// The gateway's certificate names another host than the one the leg dials.
class TunnelRelayClientNameTest : public TunnelRelayClientTest {
 protected:
  TunnelRelayClientNameTest() : TunnelRelayClientTest({"gw.invalid"}) {}
};

TEST_F(TunnelRelayClientNameTest, TheGatewaysHostNameIsChecked) {
  ASSERT_TRUE(start_leg().ok());
  ASSERT_TRUE(leg_.connect_device_end(kSession, viewer_url("127.0.0.1", kViewerToken)).ok());
  ASSERT_TRUE(serve_until([&] { return !sessions_.failure.empty() || !sessions_.log.empty(); }));
  EXPECT_FALSE(sessions_.failure.empty()) << sessions_.log.back();
  std::printf("a gateway of another name: %s\n", sessions_.failure.c_str());
  EXPECT_TRUE(events_.empty());
}

TEST_F(TunnelRelayClientTest, WithoutAClientVhostOrWithABadUrlNothingStarts) {
  auto none = leg_.connect_device_end(kSession, viewer_url("127.0.0.1", kViewerToken));
  ASSERT_FALSE(none.ok());
  ASSERT_TRUE(start_leg().ok());
  EXPECT_FALSE(leg_.connect_device_end(kSession, "https://127.0.0.1/x").ok());
  EXPECT_FALSE(leg_.connect_device_end(kSession, "wss://127.0.0.1:99999/x").ok());
  EXPECT_TRUE(sessions_.log.empty()) << "no callback for what did not start";
}

TEST(TunnelClientUrlTest, SplitsHostPortAndPath) {
  auto a = parse_tunnel_client_url("wss://gw.example:8444/tunnel/viewer/S?token=t");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "gw.example");
  EXPECT_EQ(a->port, 8444);
  EXPECT_EQ(a->path, "/tunnel/viewer/S?token=t");
  auto b = parse_tunnel_client_url("wss://[fd00::1]:9/p");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "fd00::1");
  EXPECT_EQ(b->port, 9);
  auto c = parse_tunnel_client_url("wss://gw");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->port, 443);
  EXPECT_EQ(c->path, "/");
  EXPECT_FALSE(parse_tunnel_client_url("ws://gw/x").ok());
  EXPECT_FALSE(parse_tunnel_client_url("wss://:80/x").ok());
  EXPECT_FALSE(parse_tunnel_client_url("wss://gw:/x").ok());
  EXPECT_FALSE(parse_tunnel_client_url("wss://gw:0/x").ok());
  EXPECT_FALSE(parse_tunnel_client_url("wss://[fd00::1/x").ok());
  EXPECT_FALSE(parse_tunnel_client_url("wss://user@gw/x").ok());
}

}  // namespace
}  // namespace tether::server
