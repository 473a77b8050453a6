#include "server/RestApi.h"

#include <gtest/gtest.h>

#include <set>

#include "ServerTestSupport.h"
#include "TempDir.h"
#include "protocol/EnrollmentToken.h"
#include "server/SqliteStore.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using tether::server::testing::make_device_key;
using tether::server::testing::open_ca;
using tether::testing::TempDir;

constexpr const char* kAdmin = "the-admin-token-0123456789abcdefghijklmnopq";

// The live side of devices, as the REST API sees it.
class FakeLiveDevices : public LiveDevices {
 public:
  std::optional<LiveDeviceState> live_state(const std::string& id) const override {
    if (online.count(id) == 0) return std::nullopt;
    LiveDeviceState s;
    s.address = "192.0.2.7";
    s.last_seen = 2'000'000'000;
    s.status_json = R"({"uptime_s":5})";
    return s;
  }
  void disconnect(const std::string& id, int code, const std::string&) override {
    disconnected.emplace_back(id, code);
    online.erase(id);
  }
  std::set<std::string> online;
  std::vector<std::pair<std::string, int>> disconnected;
};

class RestApiTest : public ::testing::Test {
 protected:
  RestApiTest()
      : ca_(open_ca(dir_.path())),
        store_(std::move(SqliteStore::open(dir_ / "tether.db")).value()),
        enrollment_(*store_, ca_, settings()),
        api_(*store_, enrollment_, live_, AdminToken::from_value(kAdmin)) {}

  static EnrollmentSettings settings() {
    EnrollmentSettings s;
    s.server_url = "wss://127.0.0.1:8443";
    s.rate_per_minute = 5;
    return s;
  }

  HttpResponse call(const std::string& method, const std::string& path,
                    const std::string& body = "", const std::string& token = kAdmin) {
    HttpRequest req;
    req.method = method;
    req.path = path;
    req.body = body;
    req.peer_address = "192.0.2.1";
    if (!token.empty()) req.authorization = "Bearer " + token;
    return api_.handle(req);
  }

  static json body_of(const HttpResponse& r) { return json::parse(r.body); }

  std::string enroll_device(const std::string& csr) {
    auto token = body_of(call("POST", "/api/v1/enroll-tokens", "{}"))["token"].get<std::string>();
    json req = {{"secret", protocol::parse_enrollment_token(token).value().secret},
                {"csr_pem", csr},
                {"hostname", "tc-9"},
                {"macs", {"52-54-00-12-34-56"}}};
    auto r = call("POST", "/api/v1/enroll", req.dump(), "");
    EXPECT_EQ(r.status, 201) << r.body;
    return body_of(r)["device_id"].get<std::string>();
  }

  TempDir dir_;
  CertificateAuthority ca_;
  std::unique_ptr<SqliteStore> store_;
  EnrollmentService enrollment_;
  FakeLiveDevices live_;
  RestApi api_;
};

TEST_F(RestApiTest, AdminCallsNeedTheBearerToken) {
  auto none = call("GET", "/api/v1/devices", "", "");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(body_of(none)["error"]["code"], "unauthenticated");
  auto it = std::find_if(none.headers.begin(), none.headers.end(),
                         [](const auto& h) { return h.first == "WWW-Authenticate"; });
  EXPECT_NE(it, none.headers.end());
  EXPECT_EQ(call("GET", "/api/v1/devices", "", std::string(kAdmin) + "x").status, 401);
  EXPECT_EQ(call("GET", "/api/v1/devices", "", "the-admin-token").status, 401);
  HttpRequest basic;
  basic.method = "GET";
  basic.path = "/api/v1/devices";
  basic.authorization = std::string("Basic ") + kAdmin;
  EXPECT_EQ(api_.handle(basic).status, 401);
  auto ok = call("GET", "/api/v1/devices");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(body_of(ok), json({{"devices", json::array()}}));
}

TEST_F(RestApiTest, RoutesAndMethods) {
  EXPECT_EQ(call("GET", "/api/v1/nope").status, 404);
  EXPECT_EQ(call("GET", "/").status, 404);
  EXPECT_EQ(call("GET", "/api/v2/devices").status, 404);
  auto wrong = call("PUT", "/api/v1/devices");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(body_of(wrong)["error"]["code"], "invalid_argument");
  EXPECT_EQ(wrong.headers.front(), (std::pair<std::string, std::string>{"Allow", "GET"}));
  EXPECT_EQ(call("GET", "/api/v1/enroll").status, 405);
  EXPECT_EQ(call("GET", "/api/v1/devices/").status, 200);  // a trailing slash is tolerated
  EXPECT_EQ(call("GET", "/api/v1/devices/" + std::string(64, 'a')).status, 404);
  EXPECT_EQ(call("GET", "/api/v1/devices/not-an-id").status, 404);
}

TEST_F(RestApiTest, CreateEnrollTokenValidatesItsBody) {
  auto created =
      call("POST", "/api/v1/enroll-tokens", R"({"ttl_s": 120, "mac": "52:54:00:AA:BB:CC"})");
  ASSERT_EQ(created.status, 201) << created.body;
  auto body = body_of(created);
  EXPECT_EQ(body["mac"], "52:54:00:aa:bb:cc");
  EXPECT_TRUE(body["token"].get<std::string>().rfind("tether1.", 0) == 0);
  EXPECT_TRUE(body["expires_at"].is_number_integer());
  EXPECT_TRUE(body_of(call("POST", "/api/v1/enroll-tokens", ""))["mac"].is_null());

  auto syntax = call("POST", "/api/v1/enroll-tokens", "{");
  EXPECT_EQ(syntax.status, 400);
  EXPECT_EQ(body_of(syntax)["error"]["code"], "syntax");
  auto type = call("POST", "/api/v1/enroll-tokens", R"({"ttl_s": "long"})");
  EXPECT_EQ(type.status, 400);
  EXPECT_EQ(body_of(type)["error"]["code"], "wrong_type");
  auto range = call("POST", "/api/v1/enroll-tokens", R"({"ttl_s": 0})");
  EXPECT_EQ(range.status, 400);
  EXPECT_EQ(body_of(range)["error"]["code"], "bad_value");
  auto mac = call("POST", "/api/v1/enroll-tokens", R"({"mac": "ff:ff:ff:ff:ff:ff"})");
  EXPECT_EQ(mac.status, 400);
  EXPECT_EQ(call("POST", "/api/v1/enroll-tokens", "[1]").status, 400);
  EXPECT_EQ(call("POST", "/api/v1/enroll-tokens", R"({"a":1,"a":2})").status, 400);
}

TEST_F(RestApiTest, EnrollThenListShowRevokeDelete) {
  auto device = make_device_key();
  const std::string id = enroll_device(device.csr);
  EXPECT_EQ(id, device.id);

  auto list = body_of(call("GET", "/api/v1/devices"))["devices"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], id);
  EXPECT_EQ(list[0]["name"], "tc-9");
  EXPECT_EQ(list[0]["online"], false);
  EXPECT_EQ(list[0]["address"], "192.0.2.1");
  EXPECT_EQ(list[0]["macs"], json({"52:54:00:12:34:56"}));
  EXPECT_EQ(list[0]["connected_via"], "direct");
  EXPECT_FALSE(list[0].contains("inventory"));

  live_.online.insert(id);
  auto shown = call("GET", "/api/v1/devices/" + id);
  ASSERT_EQ(shown.status, 200);
  auto d = body_of(shown);
  EXPECT_EQ(d["online"], true);
  EXPECT_EQ(d["address"], "192.0.2.7");
  EXPECT_EQ(d["last_seen"], 2'000'000'000);
  EXPECT_EQ(d["status"], json({{"uptime_s", 5}}));
  EXPECT_TRUE(d["inventory"].is_null());

  auto revoked = call("POST", "/api/v1/devices/" + id + "/revoke", "{}");
  ASSERT_EQ(revoked.status, 200);
  EXPECT_EQ(body_of(revoked)["revoked"], true);
  ASSERT_EQ(live_.disconnected.size(), 1u);
  EXPECT_EQ(live_.disconnected[0], (std::pair<std::string, int>{id, kCloseRevoked}));
  EXPECT_EQ(call("POST", "/api/v1/devices/" + id + "/revoke", "{}").status, 200);

  auto deleted = call("DELETE", "/api/v1/devices/" + id);
  ASSERT_EQ(deleted.status, 200);
  EXPECT_EQ(body_of(deleted), json({{"deleted", id}}));
  EXPECT_EQ(call("GET", "/api/v1/devices/" + id).status, 404);
  EXPECT_EQ(call("DELETE", "/api/v1/devices/" + id).status, 404);
  EXPECT_TRUE(body_of(call("GET", "/api/v1/devices"))["devices"].empty());
}

TEST_F(RestApiTest, EnrollErrors) {
  auto missing = call("POST", "/api/v1/enroll", R"({"secret":"abc"})", "");
  EXPECT_EQ(missing.status, 400);
  EXPECT_EQ(body_of(missing)["error"]["code"], "missing_field");
  auto unknown = call("POST", "/api/v1/enroll",
                      json({{"secret", std::string(43, 'A')}, {"csr_pem", "x"}}).dump(), "");
  EXPECT_EQ(unknown.status, 401);
  EXPECT_EQ(body_of(unknown)["error"]["message"], kUnknownTokenMessage);
  auto bad_mac = call("POST", "/api/v1/enroll",
                      json({{"secret", "x"}, {"csr_pem", "x"}, {"macs", {"zz"}}}).dump(), "");
  EXPECT_EQ(bad_mac.status, 400);
  // Five attempts a minute from one address (this fixture's rate), then 429.
  EXPECT_EQ(call("POST", "/api/v1/enroll", "{}", "").status, 400);
  EXPECT_EQ(call("POST", "/api/v1/enroll", "{}", "").status, 400);
  auto limited = call("POST", "/api/v1/enroll", "{}", "");
  EXPECT_EQ(limited.status, 429);
  auto retry = std::find_if(limited.headers.begin(), limited.headers.end(),
                            [](const auto& h) { return h.first == "Retry-After"; });
  ASSERT_NE(retry, limited.headers.end());
  EXPECT_GE(std::stoi(retry->second), 1);
  EXPECT_EQ(body_of(limited)["error"]["code"], "unavailable");
}

}  // namespace
}  // namespace tether::server
