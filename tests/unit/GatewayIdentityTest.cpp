// The gateway's side of joining, against a real listener with the REST API in this process:
// the blocking join runs in a thread while the test serves the lws loop.
#include "server/GatewayIdentity.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "ServerTestSupport.h"
#include "TempDir.h"
#include "common/FileIo.h"
#include "common/UniqueFd.h"
#include "protocol/GatewayJoinToken.h"
#include "server/GatewayApi.h"
#include "server/HttpsServer.h"
#include "server/RestApi.h"
#include "server/SqliteStore.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using tether::server::testing::open_ca;
using tether::testing::mode_of;
using tether::testing::slurp;
using tether::testing::TempDir;

constexpr const char* kAdmin = "the-admin-token-0123456789abcdefghijklmnopq";

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

class NoLiveDevices : public LiveDevices {
 public:
  std::optional<LiveDeviceState> live_state(const std::string&) const override {
    return std::nullopt;
  }
  void disconnect(const std::string&, int, const std::string&) override {}
  void request(const std::string& id, protocol::UpBody, RequestDone done) override {
    done(make_error(Errc::kUnavailable, "device " + id + " is offline"));
  }
};

class GatewayIdentityTest : public ::testing::Test {
 protected:
  GatewayIdentityTest()
      : ca_(open_ca(server_dir_.path())),
        store_(std::move(SqliteStore::open(server_dir_ / "tether.db")).value()),
        enrollment_(*store_, ca_, EnrollmentSettings{}),
        port_(unused_port()),
        gateways_(*store_, ca_, gateway_settings(port_)),
        api_(*store_, enrollment_, live_, AdminToken::from_value(kAdmin)) {
    api_.set_gateway_api(&gateways_);
    HttpsServerOptions options;
    options.listen = Endpoint{"127.0.0.1", port_};
    options.certificate_path = ca_.server_certificate_path();
    options.key_path = ca_.server_key_path();
    server_ = std::make_unique<HttpsServer>(options);
    server_->set_http_handler([this](const HttpRequest& request, HttpRespond respond) {
      if (request.path == "/api/v1/gateways/join") ++join_requests_;
      api_.handle(request, std::move(respond));
    });
    const auto started = server_->start();
    EXPECT_TRUE(started.ok()) << started.error().message;
  }

  static GatewayApiSettings gateway_settings(std::uint16_t port) {
    GatewayApiSettings s;
    s.server_url = "wss://127.0.0.1:" + std::to_string(port);
    return s;
  }

  // Registers a gateway as an admin would; returns its join token.
  std::string add(const std::string& name, const std::string& url, int ttl_s = 3600) {
    HttpRequest req;
    req.method = "POST";
    req.path = "/api/v1/gateways";
    req.authorization = std::string("Bearer ") + kAdmin;
    req.body = json{{"name", name}, {"url", url}, {"ttl_s", ttl_s}}.dump();
    auto r = api_.handle_now(req);
    EXPECT_TRUE(r && r->status == 201) << (r ? r->body : "no answer");
    return r ? json::parse(r->body).value("token", "") : "";
  }

  // join_gateway() in a thread while this thread serves the loop.
  Result<GatewayIdentity> join(const std::string& state_dir, const std::string& token) {
    auto done = std::async(std::launch::async,
                           [state_dir, token] { return join_gateway(state_dir, token, 5s); });
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (done.wait_for(0s) != std::future_status::ready &&
           std::chrono::steady_clock::now() < deadline) {
      lws_service(server_->context(), -1);
      std::this_thread::sleep_for(2ms);
    }
    return done.get();
  }

  TempDir server_dir_;
  TempDir gateway_dir_;
  CertificateAuthority ca_;
  std::unique_ptr<SqliteStore> store_;
  EnrollmentService enrollment_;
  std::uint16_t port_;
  GatewayApi gateways_;
  NoLiveDevices live_;
  RestApi api_;
  std::unique_ptr<HttpsServer> server_;
  std::atomic<int> join_requests_{0};
};

TEST_F(GatewayIdentityTest, JoinStoresTheIdentityAndLoadReadsItBack) {
  const std::string token = add("branch-1", "wss://gw.example:9443");
  const std::string state = gateway_dir_ / "state";
  auto joined = join(state, token);
  ASSERT_TRUE(joined.ok()) << joined.error().message;
  EXPECT_EQ(joined->name, "branch-1");
  EXPECT_EQ(joined->gateway_url, "wss://gw.example:9443");
  EXPECT_EQ(joined->server_url, "wss://127.0.0.1:" + std::to_string(port_));
  EXPECT_EQ(joined->ca_fingerprint, ca_.ca_fingerprint());
  EXPECT_GT(joined->joined_at, 0);

  EXPECT_EQ(mode_of(state), 0700u);
  EXPECT_EQ(mode_of(state + "/gateway.key"), 0600u);
  EXPECT_EQ(joined->paths.key, state + "/gateway.key");
  auto chain = pki::certificates_from_pem(slurp(joined->paths.certificate)).value();
  ASSERT_EQ(chain.size(), 2u) << "the leaf, then the CA";
  EXPECT_EQ(pki::certificate_fingerprint(chain[1].get()).value(), ca_.ca_fingerprint());
  EXPECT_TRUE(pki::key_matches_certificate(joined->key.get(), chain[0].get()));
  EXPECT_EQ(pki::describe(chain[0].get()).value().subject_alt_names,
            std::vector<std::string>{"DNS:gw.example"});
  auto bundle = pki::certificates_from_pem(slurp(joined->paths.ca_bundle)).value();
  EXPECT_EQ(bundle.size(), ca_.trusted_pems().size());

  auto loaded = GatewayIdentity::load(state);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->name, "branch-1");
  EXPECT_EQ(loaded->gateway_url, joined->gateway_url);
  EXPECT_EQ(loaded->joined_at, joined->joined_at);
  EXPECT_TRUE(pki::key_matches_certificate(loaded->key.get(), chain[0].get()));

  EXPECT_NE(store_->find_gateway("branch-1").value()->joined_at, 0);
}

TEST_F(GatewayIdentityTest, ATokenWorksOnce) {
  const std::string token = add("gw", "wss://127.0.0.1:9443");
  ASSERT_TRUE(join(gateway_dir_ / "one", token).ok());
  auto second = join(gateway_dir_ / "two", token);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, Errc::kConflict);
  EXPECT_THAT(second.error().message, HasSubstr("already joined"));
  EXPECT_FALSE(file_exists(gateway_dir_ / "two/gateway.json"));
  EXPECT_FALSE(file_exists(gateway_dir_ / "two/gateway.key")) << "nothing written on refusal";
}

TEST_F(GatewayIdentityTest, AStateDirectoryThatJoinedRefusesAnotherJoinWithoutAsking) {
  const std::string token = add("gw", "wss://127.0.0.1:9443");
  ASSERT_TRUE(join(gateway_dir_.path(), token).ok());
  const int asked = join_requests_;
  auto again = join(gateway_dir_.path(), add("gw2", "wss://127.0.0.1:9444"));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, Errc::kAlreadyExists);
  EXPECT_EQ(join_requests_, asked);
}

TEST_F(GatewayIdentityTest, AWrongCaFingerprintStopsTheJoinBeforeTheSecretIsSent) {
  auto token = protocol::parse_gateway_join_token(add("gw", "wss://127.0.0.1:9443")).value();
  token.ca_fingerprint = std::string(64, 'a');
  auto r = join(gateway_dir_.path(), protocol::format_gateway_join_token(token));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kUnauthenticated) << r.error().message;
  EXPECT_EQ(join_requests_, 0) << "the request never reached the server";
  EXPECT_EQ(store_->find_gateway("gw").value()->joined_at, 0);
}

TEST_F(GatewayIdentityTest, BadTokensAndNoServerAreClearErrors) {
  auto bad = join_gateway(gateway_dir_.path(), "tether1.nope", 1s);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::kBadValue);

  auto token = protocol::parse_gateway_join_token(add("gw", "wss://127.0.0.1:9443")).value();
  token.server_url = "wss://127.0.0.1:" + std::to_string(unused_port());
  auto nobody = join_gateway(gateway_dir_.path(), protocol::format_gateway_join_token(token), 2s);
  ASSERT_FALSE(nobody.ok());
  EXPECT_EQ(nobody.error().code, Errc::kUnavailable) << nobody.error().message;
  EXPECT_FALSE(file_exists(gateway_dir_ / "gateway.key"));
}

TEST(GatewayIdentityLoadTest, NotJoinedAndDamagedStatesAreRefused) {
  TempDir dir;
  auto none = GatewayIdentity::load(dir.path());
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, Errc::kNotFound);
  EXPECT_EQ(none.error().message,
            "this gateway has not joined yet: run tether-gateway --join TOKEN");

  ASSERT_TRUE(write_file_atomic(dir / "gateway.json", "{\"name\":1}", 0644).ok());
  auto corrupt = GatewayIdentity::load(dir.path());
  ASSERT_FALSE(corrupt.ok());
  EXPECT_THAT(corrupt.error().message, HasSubstr("gateway.json"));
}

TEST_F(GatewayIdentityTest, LoadRefusesAKeyReadableByOthers) {
  const std::string token = add("gw", "wss://127.0.0.1:9443");
  ASSERT_TRUE(join(gateway_dir_.path(), token).ok());
  ASSERT_EQ(::chmod((gateway_dir_ / "gateway.key").c_str(), 0644), 0);
  auto loaded = GatewayIdentity::load(gateway_dir_.path());
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.error().message, HasSubstr("gateway.key"));
}

}  // namespace
}  // namespace tether::server
