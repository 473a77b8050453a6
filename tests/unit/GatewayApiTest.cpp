// The gateway registry's REST routes through RestApi: add (join token), list (link info from
// the hook), remove, the join itself (single use, expiry, errors), and enroll tokens --via.
#include "server/GatewayApi.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <optional>

#include "ServerTestSupport.h"
#include "TempDir.h"
#include "protocol/EnrollmentToken.h"
#include "protocol/GatewayJoinToken.h"
#include "server/RestApi.h"
#include "server/SqliteStore.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
using tether::server::testing::make_device_key;
using tether::server::testing::open_ca;
using tether::testing::TempDir;

constexpr const char* kAdmin = "the-admin-token-0123456789abcdefghijklmnopq";

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

class GatewayApiTest : public ::testing::Test {
 protected:
  GatewayApiTest()
      : ca_(open_ca(dir_.path())),
        store_(std::move(SqliteStore::open(dir_ / "tether.db")).value()),
        enrollment_(*store_, ca_, enrollment_settings()),
        gateways_(*store_, ca_, gateway_settings(), [this] { return now_; }),
        api_(*store_, enrollment_, live_, AdminToken::from_value(kAdmin)) {
    api_.set_gateway_api(&gateways_);
    gateways_.set_on_gateways_changed([this] { ++changes_; });
  }

  static EnrollmentSettings enrollment_settings() {
    EnrollmentSettings s;
    s.server_url = "wss://127.0.0.1:8443";
    return s;
  }
  static GatewayApiSettings gateway_settings() {
    GatewayApiSettings s;
    s.server_url = "wss://127.0.0.1:8443";
    s.default_join_ttl = std::chrono::seconds(3600);
    s.join_rate_per_minute = 5;
    return s;
  }

  HttpResponse call(const std::string& method, const std::string& path, const json& body = nullptr,
                    const std::string& token = kAdmin, const std::string& peer = "192.0.2.1") {
    HttpRequest req;
    req.method = method;
    req.path = path;
    if (!body.is_null()) req.body = body.dump();
    req.peer_address = peer;
    if (!token.empty()) req.authorization = "Bearer " + token;
    auto response = api_.handle_now(req);
    if (!response) {
      ADD_FAILURE() << method << " " << path << " did not answer at once";
      return HttpResponse{};
    }
    return *response;
  }

  static json body_of(const HttpResponse& r) { return json::parse(r.body); }

  // Adds a gateway; returns its parsed join token.
  protocol::GatewayJoinToken add(const std::string& name, const std::string& url,
                                 std::optional<int> ttl = std::nullopt) {
    json body = {{"name", name}, {"url", url}};
    if (ttl) body["ttl_s"] = *ttl;
    auto r = call("POST", "/api/v1/gateways", body);
    EXPECT_EQ(r.status, 201) << r.body;
    auto token = protocol::parse_gateway_join_token(body_of(r).value("token", ""));
    EXPECT_TRUE(token.ok()) << r.body;
    return token.ok() ? *token : protocol::GatewayJoinToken{};
  }

  HttpResponse join(const protocol::GatewayJoinToken& token, const std::string& csr,
                    const std::string& peer = "192.0.2.9") {
    return call("POST", "/api/v1/gateways/join",
                {{"secret", token.secret}, {"name", token.name}, {"csr", csr}}, "", peer);
  }

  TempDir dir_;
  CertificateAuthority ca_;
  std::unique_ptr<SqliteStore> store_;
  EnrollmentService enrollment_;
  std::int64_t now_ = 1'800'000'000;
  GatewayApi gateways_;
  NoLiveDevices live_;
  RestApi api_;
  int changes_ = 0;
};

TEST_F(GatewayApiTest, AddGivesAJoinTokenForThisServerAndCa) {
  auto r =
      call("POST", "/api/v1/gateways", {{"name", "branch-1"}, {"url", "wss://GW.example:9443/"}});
  ASSERT_EQ(r.status, 201) << r.body;
  const json body = body_of(r);
  EXPECT_EQ(body["name"], "branch-1");
  EXPECT_EQ(body["url"], "wss://GW.example:9443");
  EXPECT_EQ(body["expires_at"], now_ + 3600);
  auto token = protocol::parse_gateway_join_token(body["token"].get<std::string>());
  ASSERT_TRUE(token.ok()) << token.error().message;
  EXPECT_EQ(token->name, "branch-1");
  EXPECT_EQ(token->server_url, "wss://127.0.0.1:8443");
  EXPECT_EQ(token->ca_fingerprint, ca_.ca_fingerprint());
  EXPECT_EQ(changes_, 1);
  // Only the secret's hash is kept.
  auto stored = store_->find_gateway("branch-1").value();
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->join_secret_sha256, sha256_hex(token->secret));
}

TEST_F(GatewayApiTest, AddRefusesBadInputDuplicatesAndStrangers) {
  EXPECT_EQ(call("POST", "/api/v1/gateways", {{"name", "Bad_Name"}, {"url", "wss://gw:1"}}).status,
            400);
  EXPECT_EQ(call("POST", "/api/v1/gateways", {{"name", "gw"}, {"url", "https://gw:1"}}).status,
            400);
  EXPECT_EQ(call("POST", "/api/v1/gateways", {{"name", "gw"}, {"url", "wss://gw:1/x"}}).status,
            400);
  EXPECT_EQ(call("POST", "/api/v1/gateways", {{"name", "gw"}}).status, 400);
  EXPECT_EQ(call("POST", "/api/v1/gateways", {{"name", "gw"}, {"url", "wss://gw:1"}, {"ttl_s", 0}})
                .status,
            400);
  EXPECT_EQ(call("POST", "/api/v1/gateways", {{"name", "gw"}, {"url", "wss://gw:1"}}, "").status,
            401);
  EXPECT_EQ(call("GET", "/api/v1/gateways", nullptr, "").status, 401);
  EXPECT_EQ(call("DELETE", "/api/v1/gateways/gw", nullptr, "").status, 401);
  (void)add("gw", "wss://gw:1");
  auto again = call("POST", "/api/v1/gateways", {{"name", "gw"}, {"url", "wss://other:1"}});
  EXPECT_EQ(again.status, 409);
  EXPECT_THAT(again.body, HasSubstr("exists already"));
  EXPECT_EQ(call("PUT", "/api/v1/gateways").status, 405);
}

TEST_F(GatewayApiTest, JoinIssuesACertificateForTheUrlHostOnce) {
  const auto token = add("branch-1", "wss://gw.example:9443");
  const int before = changes_;
  auto key = make_device_key();
  auto r = join(token, key.csr);
  ASSERT_EQ(r.status, 200) << r.body;
  const json body = body_of(r);
  EXPECT_EQ(body["name"], "branch-1");
  EXPECT_EQ(body["gateway_url"], "wss://gw.example:9443");
  EXPECT_EQ(body["ca_certificates"], json(ca_.trusted_pems()));
  auto cert = pki::certificate_from_pem(body["certificate"].get<std::string>()).value();
  EXPECT_TRUE(pki::key_matches_certificate(key.key.get(), cert.get()));
  auto info = pki::describe(cert.get()).value();
  EXPECT_EQ(info.common_name, "tether-gateway branch-1");
  EXPECT_EQ(info.subject_alt_names, std::vector<std::string>{"DNS:gw.example"});
  EXPECT_TRUE(pki::verify_certificate(cert.get(), {}, ca_.trusted(), pki::CertUsage::kServer).ok());
  EXPECT_EQ(changes_, before + 1);

  auto stored = store_->find_gateway("branch-1").value().value();
  EXPECT_EQ(stored.joined_at, now_);
  EXPECT_EQ(stored.cert_fingerprint, pki::certificate_fingerprint(cert.get()).value());

  auto second = join(token, make_device_key().csr);
  EXPECT_EQ(second.status, 409);
  EXPECT_THAT(second.body, HasSubstr("already joined"));
  EXPECT_EQ(changes_, before + 1);
}

TEST_F(GatewayApiTest, JoinRefusesWrongExpiredAndUnknown) {
  auto token = add("gw", "wss://192.0.2.50:9443", 60);
  auto csr = make_device_key().csr;

  auto wrong = token;
  wrong.secret[0] = wrong.secret[0] == 'A' ? 'B' : 'A';
  auto r = join(wrong, csr);
  EXPECT_EQ(r.status, 401);
  EXPECT_THAT(r.body, HasSubstr(kUnknownJoinTokenMessage));

  auto unknown = token;
  unknown.name = "nobody";
  EXPECT_EQ(join(unknown, csr).status, 401);

  EXPECT_EQ(join(token, "not a CSR").status, 400);
  EXPECT_EQ(call("POST", "/api/v1/gateways/join", {{"name", "gw"}}, "").status, 400);
  EXPECT_EQ(call("GET", "/api/v1/gateways/join", nullptr, "").status, 405);

  now_ += 61;
  r = join(token, csr);
  EXPECT_EQ(r.status, 401);
  EXPECT_THAT(r.body, HasSubstr("expired"));
  EXPECT_EQ(store_->find_gateway("gw").value()->joined_at, 0);
}

TEST_F(GatewayApiTest, JoinAttemptsAreRateLimitedPerAddress) {
  auto token = add("gw", "wss://gw:1");
  auto wrong = token;
  wrong.secret[0] = wrong.secret[0] == 'A' ? 'B' : 'A';
  int limited = 0;
  for (int i = 0; i < 8; ++i) {
    auto r = join(wrong, "x", "198.51.100.1");
    if (r.status == 429) ++limited;
  }
  EXPECT_GT(limited, 0);
  // Another address is not affected.
  EXPECT_EQ(join(token, make_device_key().csr, "198.51.100.2").status, 200);
}

TEST_F(GatewayApiTest, ListShowsJoinStateAndLinkInfo) {
  (void)add("b-waiting", "wss://b:1");
  auto token = add("a-joined", "wss://a:1");
  ASSERT_EQ(join(token, make_device_key().csr).status, 200);

  auto r = call("GET", "/api/v1/gateways");
  ASSERT_EQ(r.status, 200);
  json list = body_of(r)["gateways"];
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["name"], "a-joined");
  EXPECT_EQ(list[0]["joined"], true);
  EXPECT_EQ(list[0]["joined_at"], now_);
  EXPECT_EQ(list[0]["link"], "disconnected");
  EXPECT_EQ(list[0]["devices"], 0);
  EXPECT_EQ(list[1]["name"], "b-waiting");
  EXPECT_EQ(list[1]["joined"], false);
  EXPECT_EQ(list[1]["joined_at"], nullptr);
  EXPECT_EQ(list[1]["link"], "not joined");

  gateways_.set_link_info([](const std::string& name) {
    return GatewayLinkInfo{name == "a-joined" ? "connected" : "disconnected", 3};
  });
  list = body_of(call("GET", "/api/v1/gateways"))["gateways"];
  EXPECT_EQ(list[0]["link"], "connected");
  EXPECT_EQ(list[0]["devices"], 3);
  EXPECT_EQ(list[1]["link"], "not joined");
  EXPECT_EQ(list[1]["devices"], 0);
}

TEST_F(GatewayApiTest, RemoveForgetsTheGateway) {
  (void)add("gw", "wss://gw:1");
  const int before = changes_;
  auto r = call("DELETE", "/api/v1/gateways/gw");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(body_of(r)["removed"], "gw");
  EXPECT_EQ(changes_, before + 1);
  EXPECT_EQ(call("DELETE", "/api/v1/gateways/gw").status, 404);
  EXPECT_EQ(call("DELETE", "/api/v1/gateways/Not..Valid").status, 404);
  EXPECT_TRUE(body_of(call("GET", "/api/v1/gateways"))["gateways"].empty());
}

TEST_F(GatewayApiTest, EnrollTokensViaAGatewayNameItsUrlAndTellTheDeviceToUseIt) {
  (void)add("branch-1", "wss://gw.example:9443");
  auto r = call("POST", "/api/v1/enroll-tokens", {{"via", "branch-1"}});
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(body_of(r)["via"], "branch-1");
  auto token = protocol::parse_enrollment_token(body_of(r)["token"].get<std::string>()).value();
  EXPECT_EQ(token.server_url, "wss://gw.example:9443");

  EnrollmentRequest req;
  req.secret = token.secret;
  req.csr_pem = make_device_key().csr;
  auto enrolled = enrollment_.enroll(req);
  ASSERT_TRUE(enrolled.ok()) << enrolled.error().message;
  EXPECT_EQ(enrolled->server_url, "wss://gw.example:9443");

  auto plain = call("POST", "/api/v1/enroll-tokens", json::object());
  ASSERT_EQ(plain.status, 201);
  EXPECT_FALSE(body_of(plain).contains("via"));
  EXPECT_EQ(protocol::parse_enrollment_token(body_of(plain)["token"].get<std::string>())
                .value()
                .server_url,
            "wss://127.0.0.1:8443");

  auto unknown = call("POST", "/api/v1/enroll-tokens", {{"via", "nowhere"}});
  EXPECT_EQ(unknown.status, 404);
  EXPECT_THAT(unknown.body, HasSubstr("no gateway nowhere"));
}

}  // namespace
}  // namespace tether::server
