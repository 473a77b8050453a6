#include "server/RestApi.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
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
  // As the hub does: offline answers at once, else the request waits for the test to answer.
  void request(const std::string& id, protocol::UpBody body, RequestDone done) override {
    if (online.count(id) == 0) {
      done(make_error(Errc::kUnavailable, "device " + id + " is offline"));
      return;
    }
    requests.push_back({id, std::move(body), std::move(done)});
  }

  struct Request {
    std::string id;
    protocol::UpBody body;
    RequestDone done;
  };
  std::set<std::string> online;
  std::vector<std::pair<std::string, int>> disconnected;
  std::vector<Request> requests;
};

protocol::ResultBody ok_result(json data = json::object()) {
  protocol::ResultBody r;
  r.ok = true;
  r.data = std::move(data);
  return r;
}

protocol::ResultBody error_result(const std::string& code, const std::string& message) {
  protocol::ResultBody r;
  r.ok = false;
  r.error = protocol::RemoteError{code, message};
  return r;
}

// Where an answer that comes later lands.
struct Pending {
  std::shared_ptr<std::optional<HttpResponse>> slot =
      std::make_shared<std::optional<HttpResponse>>();
  int calls = 0;
  [[nodiscard]] bool answered() const { return slot->has_value(); }
  [[nodiscard]] const HttpResponse& response() const { return **slot; }
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
    auto response = api_.handle_now(req);
    if (!response) {
      ADD_FAILURE() << method << " " << path << " did not answer at once";
      return HttpResponse{};
    }
    return *response;
  }

  // A call whose answer may come later; every answer is counted (there must be one).
  std::shared_ptr<Pending> call_later(const std::string& method, const std::string& path,
                                      const std::string& body = "") {
    HttpRequest req;
    req.method = method;
    req.path = path;
    req.body = body;
    req.peer_address = "192.0.2.1";
    req.authorization = std::string("Bearer ") + kAdmin;
    auto pending = std::make_shared<Pending>();
    api_.handle(req, [pending](HttpResponse r) {
      ++pending->calls;
      *pending->slot = std::move(r);
    });
    return pending;
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
  EXPECT_EQ(api_.handle_now(basic)->status, 401);
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

TEST_F(RestApiTest, RebootOfAnOfflineDeviceIsAConflict) {
  const std::string id = enroll_device(make_device_key().csr);
  auto r = call("POST", "/api/v1/devices/" + id + "/reboot", "{}");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(body_of(r)["error"]["code"], "conflict");
  EXPECT_NE(body_of(r)["error"]["message"].get<std::string>().find("offline"), std::string::npos);
  EXPECT_TRUE(live_.requests.empty());
}

TEST_F(RestApiTest, RebootRoutesAndAuthentication) {
  const std::string id = enroll_device(make_device_key().csr);
  live_.online.insert(id);
  EXPECT_EQ(call("GET", "/api/v1/devices/" + id + "/reboot").status, 405);
  EXPECT_EQ(call("POST", "/api/v1/devices/" + id + "/reboot", "{}", "").status, 401);
  EXPECT_EQ(call("POST", "/api/v1/devices/" + std::string(64, 'a') + "/reboot", "{}").status, 404);
  EXPECT_EQ(call("POST", "/api/v1/devices/" + id + "/reboot", "{").status, 400);
  EXPECT_EQ(call("POST", "/api/v1/devices/" + id + "/reboot", "[]").status, 400);
  EXPECT_TRUE(live_.requests.empty());
}

TEST_F(RestApiTest, RebootAnswersWithWhatTheDeviceSaid) {
  const std::string id = enroll_device(make_device_key().csr);
  live_.online.insert(id);

  auto accepted = call_later("POST", "/api/v1/devices/" + id + "/reboot", "{}");
  EXPECT_FALSE(accepted->answered());  // waits for the device
  ASSERT_EQ(live_.requests.size(), 1u);
  EXPECT_EQ(live_.requests[0].id, id);
  const auto* command = std::get_if<protocol::Command>(&live_.requests[0].body);
  ASSERT_NE(command, nullptr);
  EXPECT_EQ(command->name, protocol::CommandName::kReboot);
  live_.requests[0].done(ok_result({{"action", "reboot"}}));
  ASSERT_TRUE(accepted->answered());
  EXPECT_EQ(accepted->calls, 1);
  EXPECT_EQ(accepted->response().status, 200);
  EXPECT_EQ(body_of(accepted->response()),
            json({{"device", id}, {"action", "reboot"}, {"result", {{"action", "reboot"}}}}));

  auto refused = call_later("POST", "/api/v1/devices/" + id + "/poweroff");
  ASSERT_EQ(live_.requests.size(), 2u);
  EXPECT_EQ(std::get<protocol::Command>(live_.requests[1].body).name,
            protocol::CommandName::kPowerOff);
  live_.requests[1].done(
      error_result("permission_denied", "org.freedesktop.login1.AccessDenied: no"));
  ASSERT_TRUE(refused->answered());
  EXPECT_EQ(refused->response().status, 502);
  EXPECT_EQ(body_of(refused->response())["error"],
            json({{"code", "permission_denied"},
                  {"message",
                   "the device could not poweroff: "
                   "org.freedesktop.login1.AccessDenied: no"}}));
}

TEST_F(RestApiTest, RebootWithoutAnAnswer) {
  const std::string id = enroll_device(make_device_key().csr);
  live_.online.insert(id);
  auto timed_out = call_later("POST", "/api/v1/devices/" + id + "/reboot");
  auto lost = call_later("POST", "/api/v1/devices/" + id + "/reboot");
  ASSERT_EQ(live_.requests.size(), 2u);
  live_.requests[0].done(make_error(Errc::kTimeout, "device did not answer within 2 s"));
  live_.requests[1].done(make_error(Errc::kUnavailable, "the channel closed"));
  ASSERT_TRUE(timed_out->answered());
  EXPECT_EQ(timed_out->response().status, 504);
  EXPECT_EQ(body_of(timed_out->response())["error"]["code"], "timeout");
  ASSERT_TRUE(lost->answered());
  EXPECT_EQ(lost->response().status, 502);
  EXPECT_EQ(body_of(lost->response())["error"]["code"], "unavailable");
  // A second answer (a buggy hub) is not passed on.
  live_.requests[0].done(ok_result());
  EXPECT_EQ(timed_out->calls, 1);
  EXPECT_EQ(timed_out->response().status, 504);
}

TEST_F(RestApiTest, AnAnswerAfterTheApiIsGoneIsSafe) {
  auto api = std::make_unique<RestApi>(*store_, enrollment_, live_, AdminToken::from_value(kAdmin));
  const std::string id = enroll_device(make_device_key().csr);
  live_.online.insert(id);
  HttpRequest req;
  req.method = "PUT";
  req.path = "/api/v1/devices/" + id + "/settings";
  req.body = R"({"set": {"shadow.view_only": "true"}})";
  req.authorization = std::string("Bearer ") + kAdmin;
  auto pending = std::make_shared<Pending>();
  api->handle(req, [pending](HttpResponse r) {
    ++pending->calls;
    *pending->slot = std::move(r);
  });
  ASSERT_EQ(live_.requests.size(), 1u);
  api.reset();
  live_.requests[0].done(ok_result());
  ASSERT_TRUE(pending->answered());
  EXPECT_EQ(pending->response().status, 503);
  EXPECT_FALSE(store_->find_device(id).value()->settings_json.has_value());
}

TEST_F(RestApiTest, SettingsOfAnOfflineDeviceAreStoredAndPending) {
  const std::string id = enroll_device(make_device_key().csr);
  auto shown = body_of(call("GET", "/api/v1/devices/" + id + "/settings"));
  EXPECT_EQ(shown, json({{"server", json::object()},
                         {"effective", nullptr},
                         {"origins", nullptr},
                         {"online", false},
                         {"settings_error", nullptr}}));

  auto put = call("PUT", "/api/v1/devices/" + id + "/settings",
                  R"({"set": {"shadow.view_only": "true", "log.level": "debug"}})");
  EXPECT_EQ(put.status, 202);
  EXPECT_EQ(body_of(put), json({{"applied", false}, {"pending", true}}));
  EXPECT_EQ(json::parse(*store_->find_device(id).value()->settings_json),
            json({{"shadow.view_only", "true"}, {"log.level", "debug"}}));

  // Merged into what is stored: unset removes, set adds or replaces.
  put = call("PUT", "/api/v1/devices/" + id + "/settings",
             R"({"set": {"shadow.view_only": "false"}, "unset": ["log.level", "x.y"]})");
  EXPECT_EQ(put.status, 202);
  shown = body_of(call("GET", "/api/v1/devices/" + id + "/settings"));
  EXPECT_EQ(shown["server"], json({{"shadow.view_only", "false"}}));
  EXPECT_TRUE(live_.requests.empty());
}

TEST_F(RestApiTest, SettingsOfAnOnlineDeviceAreStoredOnlyWhenItAccepts) {
  const std::string id = enroll_device(make_device_key().csr);
  ASSERT_TRUE(store_->update_settings(id, R"({"log.level":"debug"})").ok());
  live_.online.insert(id);
  const std::string path = "/api/v1/devices/" + id + "/settings";

  auto applied = call_later("PUT", path, R"({"set": {"shadow.view_only": "true"}})");
  ASSERT_EQ(live_.requests.size(), 1u);
  const auto* settings = std::get_if<protocol::Settings>(&live_.requests[0].body);
  ASSERT_NE(settings, nullptr);
  // The whole document goes to the device, not just the change.
  EXPECT_EQ(settings->values,
            (SettingsValues{{"log.level", "debug"}, {"shadow.view_only", "true"}}));
  // While it waits, another change is refused rather than merged into a stale document.
  auto second = call("PUT", path, R"({"set": {"a.b": "c"}})");
  EXPECT_EQ(second.status, 409);
  EXPECT_EQ(live_.requests.size(), 1u);
  EXPECT_FALSE(applied->answered());
  const json changed = {{"shadow.view_only", {{"old", "false"}, {"new", "true"}}}};
  live_.requests[0].done(
      ok_result({{"changed", changed}, {"values", {{"shadow.view_only", "true"}}}}));
  ASSERT_TRUE(applied->answered());
  EXPECT_EQ(applied->response().status, 200);
  EXPECT_EQ(body_of(applied->response()), json({{"applied", true},
                                                {"changed", changed},
                                                {"effective", {{"shadow.view_only", "true"}}}}));
  EXPECT_EQ(json::parse(*store_->find_device(id).value()->settings_json),
            json({{"log.level", "debug"}, {"shadow.view_only", "true"}}));

  // Refusals keep the stored document as it was.
  auto denied = call_later("PUT", path, R"({"set": {"shadow.allowed": "true"}})");
  ASSERT_EQ(live_.requests.size(), 2u);
  live_.requests[1].done(
      error_result("permission_denied",
                   "shadow.allowed: the local policy says false; the server cannot weaken it"));
  ASSERT_TRUE(denied->answered());
  EXPECT_EQ(denied->response().status, 409);
  EXPECT_EQ(body_of(denied->response())["error"]["code"], "permission_denied");
  EXPECT_NE(body_of(denied->response())["error"]["message"].get<std::string>().find(
                "the local policy says false"),
            std::string::npos);
  auto bad = call_later("PUT", path, R"({"set": {"nope.key": "1"}})");
  ASSERT_EQ(live_.requests.size(), 3u);
  live_.requests[2].done(error_result("bad_value", "nope.key: unknown setting"));
  EXPECT_EQ(bad->response().status, 400);
  EXPECT_EQ(body_of(bad->response())["error"]["code"], "bad_value");
  auto timeout = call_later("PUT", path, R"({"unset": ["log.level"]})");
  ASSERT_EQ(live_.requests.size(), 4u);
  live_.requests[3].done(make_error(Errc::kTimeout, "no answer"));
  EXPECT_EQ(timeout->response().status, 504);
  EXPECT_EQ(json::parse(*store_->find_device(id).value()->settings_json),
            json({{"log.level", "debug"}, {"shadow.view_only", "true"}}));
}

TEST_F(RestApiTest, SettingsChangesAreValidated) {
  const std::string id = enroll_device(make_device_key().csr);
  const std::string path = "/api/v1/devices/" + id + "/settings";
  auto code_of = [&](const std::string& body) {
    auto r = call("PUT", path, body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
    return body_of(r)["error"]["code"].get<std::string>();
  };
  EXPECT_EQ(code_of(R"({"set": {"noseparator": "1"}})"), "bad_value");
  EXPECT_EQ(code_of(R"({"set": {".key": "1"}})"), "bad_value");
  EXPECT_EQ(code_of(R"({"set": {"a.b.c": "1"}})"), "bad_value");
  EXPECT_EQ(code_of(R"({"set": {"a b.c": "1"}})"), "bad_value");
  EXPECT_EQ(code_of(json({{"set", {{"a." + std::string(63, 'k'), "1"}}}}).dump()), "too_large");
  EXPECT_EQ(code_of(json({{"unset", {"a." + std::string(63, 'k')}}}).dump()), "bad_value");
  EXPECT_EQ(code_of(R"({"set": {"a.b": true}})"), "wrong_type");
  EXPECT_EQ(code_of(R"({"set": {"a.b": "two\nlines"}})"), "bad_value");
  EXPECT_EQ(code_of(json({{"set", {{"a.b", std::string(1025, 'v')}}}}).dump()), "too_large");
  EXPECT_EQ(code_of(R"({"set": ["a.b"]})"), "wrong_type");
  EXPECT_EQ(code_of(R"({"unset": "a.b"})"), "wrong_type");
  EXPECT_EQ(code_of(R"({"unset": [1]})"), "wrong_type");
  EXPECT_EQ(code_of(R"({"set": {"a.b": "1"}, "unset": ["a.b"]})"), "bad_value");
  EXPECT_EQ(code_of(R"({"set": {"a.b": "1", "a.b": "2"}})"), "duplicate_key");
  json many = json::object();
  for (int i = 0; i < 257; ++i) many["s.k" + std::to_string(i)] = "v";
  EXPECT_EQ(code_of(json({{"set", many}}).dump()), "too_large");
  // 256 is allowed, and the limit holds for the merged document too.
  many.erase("s.k256");
  EXPECT_EQ(call("PUT", path, json({{"set", many}}).dump()).status, 202);
  EXPECT_EQ(code_of(R"({"set": {"one.more": "1"}})"), "too_large");
  EXPECT_EQ(call("PUT", path, json({{"unset", {"s.k1", "s.k2"}}}).dump()).status, 202);
  EXPECT_EQ(call("PUT", path, json({{"set", {{"a." + std::string(62, 'k'), "1"}}}}).dump()).status,
            202);
  EXPECT_EQ(call("PUT", path, json({{"unset", {"a." + std::string(62, 'k')}}}).dump()).status, 202);
  EXPECT_EQ(
      call("PUT", path, json({{"set", {{"one.more", "1"}}}, {"unset", {"s.k0"}}}).dump()).status,
      202);
  EXPECT_EQ(json::parse(*store_->find_device(id).value()->settings_json).size(), 254u);
  EXPECT_EQ(call("PUT", "/api/v1/devices/" + std::string(64, 'a') + "/settings", "{}").status, 404);
  EXPECT_EQ(call("POST", path, "{}").status, 405);
}

TEST_F(RestApiTest, SettingsOfAnOnlineDeviceShowWhatItReports) {
  const std::string id = enroll_device(make_device_key().csr);
  ASSERT_TRUE(store_->update_settings(id, R"({"shadow.view_only":"true"})").ok());
  ASSERT_TRUE(store_->set_settings_error(id, "permission_denied: no").ok());
  live_.online.insert(id);
  const std::string path = "/api/v1/devices/" + id + "/settings";
  auto shown = call_later("GET", path);
  ASSERT_EQ(live_.requests.size(), 1u);
  EXPECT_EQ(std::get<protocol::Command>(live_.requests[0].body).name,
            protocol::CommandName::kGetSettings);
  const json values = {{"shadow.view_only", "true"}, {"log.level", "info"}};
  const json origins = {{"shadow.view_only", "server"}, {"log.level", "default"}};
  live_.requests[0].done(ok_result({{"values", values}, {"origins", origins}}));
  ASSERT_TRUE(shown->answered());
  EXPECT_EQ(shown->response().status, 200);
  EXPECT_EQ(body_of(shown->response()), json({{"server", {{"shadow.view_only", "true"}}},
                                              {"effective", values},
                                              {"origins", origins},
                                              {"online", true},
                                              {"settings_error", "permission_denied: no"}}));
  EXPECT_EQ(body_of(call("GET", "/api/v1/devices/" + id))["settings_error"],
            "permission_denied: no");

  // A device that cannot tell (an older agent) still gets the server's side shown.
  auto older = call_later("GET", path);
  live_.requests[1].done(error_result("bad_value", "body.name: unknown command"));
  EXPECT_EQ(older->response().status, 200);
  EXPECT_TRUE(body_of(older->response())["effective"].is_null());
  EXPECT_EQ(body_of(older->response())["effective_error"], "bad_value: body.name: unknown command");
}

}  // namespace
}  // namespace tether::server
