#include "server/ShadowService.h"

#include <gtest/gtest.h>

#include <array>
#include <map>
#include <set>
#include <variant>

#include "TempDir.h"
#include "server/SqliteStore.h"
#include "server/TunnelRelay.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using tether::testing::TempDir;

constexpr const char* kDeviceA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
constexpr const char* kDeviceB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

class FakeLive : public LiveDevices {
 public:
  std::optional<LiveDeviceState> live_state(const std::string& id) const override {
    if (online.count(id) == 0) return std::nullopt;
    LiveDeviceState state;
    if (auto it = gateway_of.find(id); it != gateway_of.end()) {
      state.gateway = it->second;
      state.connected_via = "gateway:" + it->second;
    }
    return state;
  }
  void disconnect(const std::string&, int, const std::string&) override {}
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
  std::map<std::string, std::string> gateway_of;  // device → gateway name
  std::vector<Request> requests;
};

class FakeGateways : public ShadowGateways {
 public:
  std::optional<std::string> gateway_url(const std::string& name) const override {
    if (auto it = urls.find(name); it != urls.end()) return it->second;
    return std::nullopt;
  }
  bool open_tunnel(const std::string& gateway, const GatewayTunnelOpen& open) override {
    opened.emplace_back(gateway, open);
    // The link carries tunnel_open before shadow_start: no request to the device yet.
    requests_before_open.push_back(live != nullptr ? live->requests.size() : 0);
    return links_up.count(gateway) != 0;
  }
  void close_tunnel(const std::string& gateway, const std::string& session_id,
                    const std::string& reason) override {
    closed.push_back({gateway, session_id, reason});
  }
  std::map<std::string, std::string> urls;
  std::set<std::string> links_up;
  FakeLive* live = nullptr;
  std::vector<std::pair<std::string, GatewayTunnelOpen>> opened;
  std::vector<std::size_t> requests_before_open;
  std::vector<std::array<std::string, 3>> closed;
};

class FakeTransport : public TunnelTransport {
 public:
  void request_writable(const std::string&, TunnelEnd end) override {
    ++writable[static_cast<int>(end)];
  }
  void set_receiving(const std::string&, TunnelEnd end, bool receiving) override {
    toggles.emplace_back(end, receiving);
  }
  Status connect_device_end(const std::string& session, const std::string& url) override {
    connects.emplace_back(session, url);
    if (refuse_connect) return make_error(Errc::kUnavailable, "no route to host");
    return {};
  }
  int writable[2] = {0, 0};
  std::vector<std::pair<TunnelEnd, bool>> toggles;
  std::vector<std::pair<std::string, std::string>> connects;
  bool refuse_connect = false;
};

protocol::ResultBody ok_result(json data) {
  protocol::ResultBody r;
  r.ok = true;
  r.data = std::move(data);
  return r;
}

protocol::ResultBody refusal(const std::string& code) {
  protocol::ResultBody r;
  r.ok = false;
  r.error = protocol::RemoteError{code, "because " + code};
  return r;
}

struct Answer {
  std::shared_ptr<std::optional<HttpResponse>> slot =
      std::make_shared<std::optional<HttpResponse>>();
  HttpRespond respond() {
    return [slot = slot](HttpResponse r) { *slot = std::move(r); };
  }
  [[nodiscard]] bool answered() const { return slot->has_value(); }
  [[nodiscard]] int status() const { return (*slot)->status; }
  [[nodiscard]] json body() const { return json::parse((*slot)->body); }
};

class ShadowServiceTest : public ::testing::Test {
 protected:
  ShadowServiceTest() : store_(std::move(SqliteStore::open(dir_.path() + "/tether.db")).value()) {
    add_device(kDeviceA, "tc-a", "t1");
    add_device(kDeviceB, "tc-b", "t2");
    live_.online = {kDeviceA, kDeviceB};
    gateways_.live = &live_;
    gateways_.urls["branch-1"] = "wss://gw.example:8444";
    gateways_.links_up.insert("branch-1");
    make_service(std::chrono::seconds(30), 100);
  }

  void make_service(std::chrono::seconds ttl, std::size_t max_sessions) {
    service_.reset();
    ShadowSettings settings;
    settings.token_ttl = ttl;
    settings.max_sessions = max_sessions;
    settings.public_url = "wss://ums.example:8443";
    settings.limits.max_queued = 1000;
    service_ = std::make_unique<ShadowService>(
        *store_, live_,
        [this](const std::string& id, const protocol::UpBody& body) {
          notified_.emplace_back(id, body);
          return true;
        },
        settings, [this] { return clock_; });
    service_->set_transport(&transport_);
    service_->set_gateways(&gateways_);
  }

  void add_device(const std::string& id, const std::string& hostname, const std::string& token) {
    EnrollmentTokenRecord t;
    t.id = token;
    t.secret_sha256 = std::string(64, token.back());
    t.created_at = 1;
    t.expires_at = 4'000'000'000;
    ASSERT_TRUE(store_->insert_enrollment_token(t).ok());
    EnrolledDevice d;
    d.id = id;
    d.hostname = hostname;
    d.new_online_key = std::string(64, '0');
    auto r = store_->redeem_token_and_enroll(token, 2, d);
    ASSERT_TRUE(r.ok()) << r.error().message;
  }

  // Starts a session for `device` and returns the answer slot; the request is
  // live_.requests.back().
  Answer start(const std::string& device = kDeviceA, const std::string& host = "ums.example:8443",
               protocol::ViewerKind viewer = protocol::ViewerKind::kExternal) {
    ShadowService::StartRequest req;
    req.device_id = device;
    req.admin = "alice";
    req.host = host;
    req.viewer = viewer;
    Answer answer;
    service_->start(req, answer.respond());
    return answer;
  }

  const protocol::ShadowStart& last_start() {
    return std::get<protocol::ShadowStart>(live_.requests.back().body);
  }

  // A session accepted by the device; returns {session id, viewer token}.
  std::pair<std::string, std::string> accepted_session(const std::string& device = kDeviceA) {
    Answer answer = start(device);
    EXPECT_FALSE(answer.answered());
    live_.requests.back().done(ok_result({{"view_only", true}, {"consent", "accepted"}}));
    EXPECT_EQ(answer.status(), 201);
    const json body = answer.body();
    const std::string url = body["viewer_url"];
    return {body["session"], url.substr(url.find("token=") + 6)};
  }

  std::vector<ShadowAuditRecord> audit() { return store_->list_shadow_audit("", 100).value(); }

  TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
  FakeLive live_;
  FakeGateways gateways_;
  FakeTransport transport_;
  std::int64_t clock_ = 1'700'000'000;
  std::vector<std::pair<std::string, protocol::UpBody>> notified_;
  std::unique_ptr<ShadowService> service_;
};

TEST_F(ShadowServiceTest, SendsShadowStartAndAnswers201WithTheViewerUrl) {
  Answer answer = start();
  ASSERT_EQ(live_.requests.size(), 1u);
  const auto& body = last_start();
  EXPECT_EQ(body.session_id.size(), 22u);
  EXPECT_EQ(body.token.size(), 43u);
  EXPECT_EQ(body.tunnel_url, "wss://ums.example:8443/tunnel/device/" + body.session_id);
  EXPECT_EQ(body.admin, "alice");
  EXPECT_EQ(body.viewer, protocol::ViewerKind::kExternal);
  EXPECT_FALSE(answer.answered()) << "waits for the device";
  live_.requests[0].done(ok_result({{"view_only", true}, {"consent", "default_accepted"}}));
  ASSERT_TRUE(answer.answered());
  EXPECT_EQ(answer.status(), 201);
  const json j = answer.body();
  EXPECT_EQ(j["session"], body.session_id);
  EXPECT_EQ(j["view_only"], true);
  EXPECT_EQ(j["consent"], "default_accepted");
  EXPECT_EQ(j["expires_in"], 30);
  const std::string url = j["viewer_url"];
  const std::string prefix = "wss://ums.example:8443/tunnel/viewer/" + body.session_id + "?token=";
  ASSERT_EQ(url.rfind(prefix, 0), 0u) << url;
  EXPECT_EQ(url.size() - prefix.size(), 43u);
  EXPECT_NE(url.substr(prefix.size()), body.token) << "two different tokens";
  const auto rows = audit();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].admin, "alice");
  EXPECT_EQ(rows[0].hostname, "tc-a");
  EXPECT_EQ(rows[0].viewer, "external");
  EXPECT_TRUE(rows[0].view_only);
  EXPECT_FALSE(rows[0].ended_at);
}

TEST_F(ShadowServiceTest, ViewerUrlFallsBackToThePublicUrlWithoutAHost) {
  Answer answer = start(kDeviceA, "");
  live_.requests[0].done(ok_result(json::object()));
  const std::string url = answer.body()["viewer_url"];
  EXPECT_EQ(url.rfind("wss://ums.example:8443/tunnel/viewer/", 0), 0u) << url;
  EXPECT_EQ(answer.body()["consent"], "not_required");
}

TEST_F(ShadowServiceTest, MapsRefusalsToStatusesAndAuditsThem) {
  const std::pair<const char*, int> cases[] = {
      {"policy", 403}, {"user_denied", 403}, {"prompt_timeout", 403}, {"no_session", 409},
      {"busy", 409},   {"vnc_failed", 502},  {"something_new", 502},
  };
  for (const auto& [code, status] : cases) {
    Answer answer = start();
    live_.requests.back().done(refusal(code));
    ASSERT_TRUE(answer.answered()) << code;
    EXPECT_EQ(answer.status(), status) << code;
    EXPECT_EQ(answer.body()["error"]["code"], code);
    EXPECT_EQ(answer.body()["error"]["message"], std::string("because ") + code);
    EXPECT_EQ(service_->session_count(), 0u) << "a refused session is gone";
    const auto rows = audit();
    EXPECT_EQ(rows[0].end_reason, code);
    EXPECT_TRUE(rows[0].ended_at);
  }
}

TEST_F(ShadowServiceTest, OfflineTimeoutAndLostChannel) {
  live_.online.erase(kDeviceA);
  Answer offline = start();
  EXPECT_EQ(offline.status(), 409);
  EXPECT_EQ(offline.body()["error"]["code"], "offline");
  EXPECT_EQ(audit()[0].end_reason, "offline");

  live_.online.insert(kDeviceA);
  Answer late = start();
  live_.requests.back().done(make_error(Errc::kTimeout, "no answer"));
  EXPECT_EQ(late.status(), 504);
  ASSERT_EQ(notified_.size(), 1u) << "the device is told to stop what it may still start";
  EXPECT_EQ(std::get<protocol::ShadowStop>(notified_[0].second).reason, "timeout");

  Answer lost = start();
  live_.requests.back().done(make_error(Errc::kUnavailable, "channel closed"));
  EXPECT_EQ(lost.status(), 502);

  Answer unknown = start("cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc");
  EXPECT_EQ(unknown.status(), 404);
}

TEST_F(ShadowServiceTest, OneActiveSessionPerDeviceAndACap) {
  auto [id, token] = accepted_session(kDeviceA);
  Answer second = start(kDeviceA);
  EXPECT_EQ(second.status(), 409);
  EXPECT_EQ(second.body()["error"]["code"], "busy");
  make_service(std::chrono::seconds(30), 1);
  (void)accepted_session(kDeviceA);
  Answer capped = start(kDeviceB);
  EXPECT_EQ(capped.status(), 503);
}

TEST_F(ShadowServiceTest, TokensAreSingleUseAndBoundToTheirEnd) {
  Answer answer = start();
  const std::string device_token = last_start().token;
  const std::string id = last_start().session_id;
  live_.requests.back().done(ok_result(json::object()));
  ASSERT_EQ(answer.status(), 201);

  EXPECT_FALSE(service_->check_join(id, TunnelEnd::kDevice, "wrong", kDeviceA).ok());
  EXPECT_FALSE(service_->check_join(id, TunnelEnd::kDevice, device_token, kDeviceB).ok())
      << "another device's certificate";
  EXPECT_FALSE(service_->check_join(id, TunnelEnd::kDevice, device_token, "").ok())
      << "no certificate";
  EXPECT_FALSE(service_->check_join(id, TunnelEnd::kViewer, device_token, "").ok())
      << "the device token does not open the viewer end";
  EXPECT_FALSE(
      service_->check_join("nosuchsession", TunnelEnd::kDevice, device_token, kDeviceA).ok());
  EXPECT_TRUE(service_->check_join(id, TunnelEnd::kDevice, device_token, kDeviceA).ok());
  EXPECT_TRUE(service_->check_join(id, TunnelEnd::kDevice, device_token, kDeviceA).ok())
      << "checking does not use it";
  EXPECT_TRUE(service_->join(id, TunnelEnd::kDevice, device_token, kDeviceA).ok());
  EXPECT_FALSE(service_->join(id, TunnelEnd::kDevice, device_token, kDeviceA).ok()) << "used";

  auto [id_b, viewer_b] = accepted_session(kDeviceB);
  EXPECT_FALSE(service_->join(id_b, TunnelEnd::kViewer, viewer_b.substr(1), "").ok());
  EXPECT_FALSE(service_->join(id, TunnelEnd::kViewer, viewer_b, "").ok()) << "another session's";
  EXPECT_TRUE(service_->join(id_b, TunnelEnd::kViewer, viewer_b, "").ok());
  EXPECT_FALSE(service_->join(id_b, TunnelEnd::kViewer, viewer_b, "").ok()) << "used";
}

TEST_F(ShadowServiceTest, TokensExpire) {
  make_service(std::chrono::seconds(0), 100);
  auto [id, viewer] = accepted_session();
  auto st = service_->check_join(id, TunnelEnd::kViewer, viewer, "");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("expired"), std::string::npos) << st.error().message;
}

TEST_F(ShadowServiceTest, SplicesCountsBytesAndAuditsTheViewerLeaving) {
  auto [id, viewer] = accepted_session();
  const std::string device_token = last_start().token;
  ASSERT_TRUE(service_->join(id, TunnelEnd::kDevice, device_token, kDeviceA).ok());
  service_->opened(id, TunnelEnd::kDevice);
  service_->received(id, TunnelEnd::kDevice, "RFB 003.008\n");
  ASSERT_TRUE(service_->join(id, TunnelEnd::kViewer, viewer, "").ok());
  clock_ += 5;
  service_->opened(id, TunnelEnd::kViewer);
  EXPECT_EQ(service_->active_sessions()[0].state, "spliced");
  auto w = service_->take(id, TunnelEnd::kViewer);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Write>(w));
  EXPECT_EQ(std::get<TunnelSplice::Write>(w).data, "RFB 003.008\n");
  service_->received(id, TunnelEnd::kViewer, "RFB 003.008\n\x01");
  (void)service_->take(id, TunnelEnd::kDevice);
  clock_ += 10;
  service_->closed(id, TunnelEnd::kViewer);
  auto c = service_->take(id, TunnelEnd::kDevice);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Close>(c));
  EXPECT_EQ(std::get<TunnelSplice::Close>(c).reason, "viewer_closed");
  EXPECT_EQ(service_->session_count(), 1u) << "until the device end is closed";
  service_->closed(id, TunnelEnd::kDevice);
  EXPECT_EQ(service_->session_count(), 0u);
  const auto row = audit()[0];
  EXPECT_EQ(row.end_reason, "viewer_closed");
  EXPECT_EQ(row.bytes_to_viewer, 12);
  EXPECT_EQ(row.bytes_to_device, 13);
  EXPECT_EQ(row.started_at, 1'700'000'005);
  EXPECT_EQ(row.ended_at, 1'700'000'015);
  EXPECT_TRUE(notified_.empty()) << "the device learns it from its tunnel";
  // The device's own account of it afterwards does not replace the first reason.
  service_->on_device_stop(kDeviceA, protocol::ShadowStop{id, "viewer_closed", ""});
  EXPECT_EQ(audit()[0].end_reason, "viewer_closed");
}

TEST_F(ShadowServiceTest, TheDevicesShadowStopReasonBeatsSeeingItsTunnelClose) {
  auto [id, viewer] = accepted_session();
  ASSERT_TRUE(service_->join(id, TunnelEnd::kDevice, last_start().token, kDeviceA).ok());
  service_->opened(id, TunnelEnd::kDevice);
  ASSERT_TRUE(service_->join(id, TunnelEnd::kViewer, viewer, "").ok());
  service_->opened(id, TunnelEnd::kViewer);
  service_->closed(id, TunnelEnd::kDevice);
  service_->closed(id, TunnelEnd::kViewer);
  EXPECT_EQ(audit()[0].end_reason, "device_closed");
  // Another device cannot touch it.
  service_->on_device_stop(kDeviceB, protocol::ShadowStop{id, "user", "x"});
  EXPECT_EQ(audit()[0].end_reason, "device_closed");
  service_->on_device_stop(kDeviceA, protocol::ShadowStop{id, "user", "ended from the tray"});
  EXPECT_EQ(audit()[0].end_reason, "user");
  EXPECT_EQ(audit()[0].end_message, "ended from the tray");
}

TEST_F(ShadowServiceTest, DeviceShadowStopEndsALiveSession) {
  auto [id, viewer] = accepted_session();
  ASSERT_TRUE(service_->join(id, TunnelEnd::kViewer, viewer, "").ok());
  service_->opened(id, TunnelEnd::kViewer);
  service_->on_device_stop(kDeviceA, protocol::ShadowStop{id, "vnc_exited", "status 1"});
  auto c = service_->take(id, TunnelEnd::kViewer);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Close>(c));
  service_->closed(id, TunnelEnd::kViewer);
  EXPECT_EQ(service_->session_count(), 0u);
  EXPECT_EQ(audit()[0].end_reason, "vnc_exited");
  EXPECT_FALSE(service_->check_join(id, TunnelEnd::kDevice, last_start().token, kDeviceA).ok());
}

TEST_F(ShadowServiceTest, AnEndThatDoesNotArriveInTimeClosesThePeerWith4408) {
  auto [id, viewer] = accepted_session();
  ASSERT_TRUE(service_->join(id, TunnelEnd::kDevice, last_start().token, kDeviceA).ok());
  service_->opened(id, TunnelEnd::kDevice);
  service_->expire(std::chrono::steady_clock::now());
  EXPECT_EQ(service_->active_sessions()[0].state, "device_joined");
  service_->expire(std::chrono::steady_clock::now() + std::chrono::seconds(31));
  auto c = service_->take(id, TunnelEnd::kDevice);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Close>(c));
  EXPECT_EQ(std::get<TunnelSplice::Close>(c).code, 4408);
  EXPECT_EQ(std::get<TunnelSplice::Close>(c).reason, "peer did not arrive");
  ASSERT_EQ(notified_.size(), 1u);
  EXPECT_EQ(std::get<protocol::ShadowStop>(notified_[0].second).reason, "peer_timeout");
  EXPECT_FALSE(service_->join(id, TunnelEnd::kViewer, viewer, "").ok());
  service_->closed(id, TunnelEnd::kDevice);
  EXPECT_EQ(audit()[0].end_reason, "peer_timeout");
}

TEST_F(ShadowServiceTest, AdminDeleteAndServerStopTellTheDevice) {
  auto [id, viewer] = accepted_session(kDeviceA);
  auto [id_b, viewer_b] = accepted_session(kDeviceB);
  ASSERT_TRUE(service_->join(id_b, TunnelEnd::kViewer, viewer_b, "").ok());
  service_->opened(id_b, TunnelEnd::kViewer);
  EXPECT_TRUE(service_->end_by_admin(id));
  EXPECT_FALSE(service_->end_by_admin(id)) << "gone";
  ASSERT_EQ(notified_.size(), 1u);
  EXPECT_EQ(notified_[0].first, kDeviceA);
  EXPECT_EQ(std::get<protocol::ShadowStop>(notified_[0].second).reason, "admin");
  EXPECT_EQ(std::get<protocol::ShadowStop>(notified_[0].second).session_id, id);
  service_->stop_all();
  ASSERT_EQ(notified_.size(), 2u);
  EXPECT_EQ(std::get<protocol::ShadowStop>(notified_[1].second).reason, "server_stopping");
  service_->closed(id_b, TunnelEnd::kViewer);
  std::map<std::string, std::string> reasons;
  for (const auto& r : audit()) reasons[r.session_id] = r.end_reason;
  EXPECT_EQ(reasons[id], "admin");
  EXPECT_EQ(reasons[id_b], "server_stopping");
}

TEST_F(ShadowServiceTest, RestRoutesListAuditAndDelete) {
  auto [id, viewer] = accepted_session(kDeviceA);
  Answer refused = start(kDeviceB);
  live_.requests.back().done(refusal("user_denied"));
  HttpRequest req;
  req.method = "GET";
  auto respond = [](HttpResponse) { ADD_FAILURE() << "answered later"; };
  auto list = service_->route(req, {"shadow", "sessions"}, respond);
  ASSERT_TRUE(list);
  json sessions = json::parse(list->body)["sessions"];
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions[0]["session"], id);
  EXPECT_EQ(sessions[0]["state"], "accepted");
  EXPECT_EQ(sessions[0]["admin"], "alice");

  req.query = std::string("device=") + kDeviceB + "&limit=5";
  auto rows = service_->route(req, {"audit"}, respond);
  ASSERT_TRUE(rows);
  json a = json::parse(rows->body)["sessions"];
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0]["end_reason"], "user_denied");
  EXPECT_EQ(a[0]["device"], kDeviceB);
  req.query = "limit=1";
  EXPECT_EQ(json::parse(service_->route(req, {"audit"}, respond)->body)["sessions"].size(), 1u);
  req.query = "limit=0";
  EXPECT_EQ(service_->route(req, {"audit"}, respond)->status, 400);
  req.query = "device=xyz";
  EXPECT_EQ(service_->route(req, {"audit"}, respond)->status, 400);

  req.method = "DELETE";
  req.query.clear();
  auto deleted = service_->route(req, {"shadow", "sessions", id}, respond);
  EXPECT_EQ(deleted->status, 200);
  EXPECT_EQ(service_->route(req, {"shadow", "sessions", id}, respond)->status, 404);

  EXPECT_TRUE(ShadowService::owns_route({"devices", kDeviceA, "shadow"}));
  EXPECT_TRUE(ShadowService::owns_route({"audit"}));
  EXPECT_FALSE(ShadowService::owns_route({"devices", kDeviceA, "settings"}));
}

TEST_F(ShadowServiceTest, RestStartTakesTheBodyAndThePrincipal) {
  HttpRequest req;
  req.method = "POST";
  req.principal = "bob";
  req.host = "10.0.0.5:8443";
  req.body = R"({"view_only": true, "monitor": "HDMI-1", "viewer": "browser"})";
  std::optional<HttpResponse> later;
  auto now = service_->route(req, {"devices", kDeviceA, "shadow"},
                             [&](HttpResponse r) { later = std::move(r); });
  EXPECT_FALSE(now);
  const auto& s = last_start();
  EXPECT_TRUE(s.view_only);
  EXPECT_EQ(s.monitor, "HDMI-1");
  EXPECT_EQ(s.admin, "bob");
  EXPECT_EQ(s.viewer, protocol::ViewerKind::kBrowser);
  live_.requests.back().done(ok_result(json::object()));
  ASSERT_TRUE(later);
  EXPECT_EQ(later->status, 201);
  EXPECT_EQ(
      json::parse(later->body)["viewer_url"].get<std::string>().rfind("wss://10.0.0.5:8443/", 0),
      0u);
  req.body = R"({"viewer": "telnet"})";
  EXPECT_EQ(service_->route(req, {"devices", kDeviceB, "shadow"}, {})->status, 400);
}

TEST_F(ShadowServiceTest, AuditRowsAreReplacedBySessionAndListedNewestFirst) {
  ShadowAuditRecord r;
  r.session_id = "s1";
  r.device_id = kDeviceA;
  r.hostname = "tc-a";
  r.admin = "alice";
  r.viewer = "browser";
  r.requested_at = 100;
  ASSERT_TRUE(store_->save_shadow_audit(r).ok());
  r.started_at = 101;
  r.ended_at = 160;
  r.bytes_to_viewer = 1 << 20;
  r.bytes_to_device = 77;
  r.end_reason = "viewer_closed";
  r.end_message = "bye";
  r.view_only = true;
  ASSERT_TRUE(store_->save_shadow_audit(r).ok());
  ShadowAuditRecord other = r;
  other.session_id = "s2";
  other.device_id = kDeviceB;
  other.requested_at = 200;
  other.started_at.reset();
  other.ended_at.reset();
  other.end_reason.clear();
  other.end_message.clear();
  ASSERT_TRUE(store_->save_shadow_audit(other).ok());
  ShadowAuditRecord third = other;
  third.session_id = "s3";
  third.requested_at = 200;  // same second: the later insert comes first
  ASSERT_TRUE(store_->save_shadow_audit(third).ok());

  auto all = store_->list_shadow_audit("", 10).value();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].session_id, "s3");
  EXPECT_EQ(all[1].session_id, "s2");
  EXPECT_EQ(all[2].session_id, "s1");
  EXPECT_FALSE(all[1].started_at);
  EXPECT_TRUE(all[1].end_reason.empty());
  const auto& first = all[2];
  EXPECT_EQ(first.started_at, 101);
  EXPECT_EQ(first.ended_at, 160);
  EXPECT_EQ(first.bytes_to_viewer, 1 << 20);
  EXPECT_EQ(first.bytes_to_device, 77);
  EXPECT_EQ(first.end_reason, "viewer_closed");
  EXPECT_EQ(first.end_message, "bye");
  EXPECT_TRUE(first.view_only);
  EXPECT_EQ(first.admin, "alice");
  auto only_a = store_->list_shadow_audit(kDeviceA, 10).value();
  ASSERT_EQ(only_a.size(), 1u);
  EXPECT_EQ(only_a[0].session_id, "s1");
  EXPECT_EQ(store_->list_shadow_audit("", 2).value().size(), 2u);
}

// ---- devices behind a gateway ------------------------------------------------------------

TEST_F(ShadowServiceTest, GatewayDeviceWithAnExternalViewerMeetsAtTheGateway) {
  live_.gateway_of[kDeviceA] = "branch-1";
  Answer answer = start();
  ASSERT_EQ(gateways_.opened.size(), 1u);
  ASSERT_EQ(live_.requests.size(), 1u);
  EXPECT_EQ(gateways_.requests_before_open[0], 0u) << "tunnel_open goes before shadow_start";
  const auto& [gateway, open] = gateways_.opened[0];
  const std::string id = last_start().session_id;
  EXPECT_EQ(gateway, "branch-1");
  EXPECT_EQ(open.session_id, id);
  EXPECT_EQ(open.device_id, kDeviceA);
  EXPECT_EQ(open.device_token, last_start().token);
  EXPECT_GE(open.ttl, std::chrono::seconds(30)) << "it must outlive the device's answer";
  EXPECT_EQ(last_start().tunnel_url, "wss://gw.example:8444/tunnel/device/" + id);
  live_.requests.back().done(ok_result(json::object()));
  ASSERT_EQ(answer.status(), 201);
  EXPECT_EQ(answer.body()["viewer_url"],
            "wss://gw.example:8444/tunnel/viewer/" + id + "?token=" + open.viewer_token);
  // Neither end may join at the server.
  auto device = service_->check_join(id, TunnelEnd::kDevice, open.device_token, kDeviceA);
  ASSERT_FALSE(device.ok());
  EXPECT_NE(device.error().message.find("gateway branch-1"), std::string::npos);
  EXPECT_FALSE(service_->check_join(id, TunnelEnd::kViewer, open.viewer_token, "").ok());

  service_->on_gateway_tunnel_event("branch-1", id, "device_joined", "");
  EXPECT_EQ(service_->active_sessions()[0].state, "device_joined");
  service_->on_gateway_tunnel_event("other-gw", id, "spliced", "");
  EXPECT_FALSE(audit()[0].started_at) << "another gateway's word counts for nothing";
  clock_ += 3;
  service_->on_gateway_tunnel_event("branch-1", id, "viewer_joined", "");
  service_->on_gateway_tunnel_event("branch-1", id, "spliced", "");
  EXPECT_EQ(service_->active_sessions()[0].state, "spliced");
  EXPECT_EQ(audit()[0].started_at, 1'700'000'003);
  service_->expire(std::chrono::steady_clock::now() + std::chrono::seconds(300));
  EXPECT_EQ(service_->session_count(), 1u) << "spliced at the gateway: no peer_timeout";
  clock_ += 10;
  service_->on_gateway_tunnel_event("branch-1", id, "ended", "viewer_closed");
  EXPECT_EQ(service_->session_count(), 0u);
  const auto row = audit()[0];
  EXPECT_EQ(row.end_reason, "viewer_closed");
  EXPECT_EQ(row.ended_at, 1'700'000'013);
  EXPECT_TRUE(gateways_.closed.empty()) << "the gateway ended it: nothing to close there";
  EXPECT_TRUE(notified_.empty());
  // Late events find nothing.
  service_->on_gateway_tunnel_event("branch-1", id, "ended", "device_closed");
  EXPECT_EQ(audit()[0].end_reason, "viewer_closed");
}

TEST_F(ShadowServiceTest, GatewayTimeoutIsAPeerTimeoutAndTheDeviceIsTold) {
  live_.gateway_of[kDeviceA] = "branch-1";
  auto [id, viewer] = accepted_session();
  service_->on_gateway_tunnel_event("branch-1", id, "ended", "timeout");
  EXPECT_EQ(service_->session_count(), 0u);
  EXPECT_EQ(audit()[0].end_reason, "peer_timeout");
  ASSERT_EQ(notified_.size(), 1u);
  EXPECT_EQ(std::get<protocol::ShadowStop>(notified_[0].second).reason, "peer_timeout");
  EXPECT_TRUE(gateways_.closed.empty());
}

TEST_F(ShadowServiceTest, GatewayDeviceWithABrowserGoesThroughTheServersLeg) {
  live_.gateway_of[kDeviceA] = "branch-1";
  Answer answer = start(kDeviceA, "ums.example:8443", protocol::ViewerKind::kBrowser);
  ASSERT_EQ(gateways_.opened.size(), 1u);
  const GatewayTunnelOpen open = gateways_.opened[0].second;
  const std::string id = last_start().session_id;
  EXPECT_EQ(last_start().tunnel_url, "wss://gw.example:8444/tunnel/device/" + id);
  live_.requests.back().done(ok_result(json::object()));
  ASSERT_EQ(answer.status(), 201);
  const std::string url = answer.body()["viewer_url"];
  const std::string prefix = "wss://ums.example:8443/tunnel/viewer/" + id + "?token=";
  ASSERT_EQ(url.rfind(prefix, 0), 0u) << "the browser stays with the server: " << url;
  const std::string browser_token = url.substr(prefix.size());
  EXPECT_NE(browser_token, open.viewer_token) << "the gateway's viewer token is the server's own";
  EXPECT_FALSE(service_->check_join(id, TunnelEnd::kViewer, open.viewer_token, "").ok());
  EXPECT_FALSE(service_->check_join(id, TunnelEnd::kDevice, open.device_token, kDeviceA).ok());

  ASSERT_TRUE(service_->join(id, TunnelEnd::kViewer, browser_token, "").ok());
  EXPECT_TRUE(transport_.connects.empty()) << "the leg opens once the browser's end is open";
  service_->opened(id, TunnelEnd::kViewer);
  ASSERT_EQ(transport_.connects.size(), 1u);
  EXPECT_EQ(transport_.connects[0].first, id);
  EXPECT_EQ(transport_.connects[0].second,
            "wss://gw.example:8444/tunnel/viewer/" + id + "?token=" + open.viewer_token);
  EXPECT_EQ(service_->active_sessions()[0].state, "viewer_joined");
  clock_ += 2;
  service_->opened(id, TunnelEnd::kDevice);  // the leg is open
  EXPECT_EQ(service_->active_sessions()[0].state, "spliced");
  service_->on_gateway_tunnel_event("branch-1", id, "spliced", "");
  EXPECT_EQ(audit()[0].started_at, 1'700'000'002);
  service_->received(id, TunnelEnd::kDevice, "RFB 003.008\n");
  auto w = service_->take(id, TunnelEnd::kViewer);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Write>(w));
  EXPECT_EQ(std::get<TunnelSplice::Write>(w).data, "RFB 003.008\n");
  service_->closed(id, TunnelEnd::kViewer);
  auto c = service_->take(id, TunnelEnd::kDevice);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Close>(c)) << "the leg is closed too";
  EXPECT_EQ(std::get<TunnelSplice::Close>(c).reason, "viewer_closed");
  ASSERT_EQ(gateways_.closed.size(), 1u);
  EXPECT_EQ(gateways_.closed[0], (std::array<std::string, 3>{"branch-1", id, "viewer_closed"}));
  service_->closed(id, TunnelEnd::kDevice);
  EXPECT_EQ(service_->session_count(), 0u);
  EXPECT_EQ(audit()[0].end_reason, "viewer_closed");
  EXPECT_EQ(audit()[0].bytes_to_viewer, 12);
  service_->on_gateway_tunnel_event("branch-1", id, "ended", "viewer_closed");
  EXPECT_EQ(gateways_.closed.size(), 1u);
}

TEST_F(ShadowServiceTest, TheGatewaysEndWaitsForTheLegToCloseWithItsLastBytes) {
  live_.gateway_of[kDeviceA] = "branch-1";
  Answer answer = start(kDeviceA, "ums.example:8443", protocol::ViewerKind::kBrowser);
  const std::string id = last_start().session_id;
  live_.requests.back().done(ok_result(json::object()));
  const std::string url = answer.body()["viewer_url"];
  ASSERT_TRUE(service_->join(id, TunnelEnd::kViewer, url.substr(url.find("token=") + 6), "").ok());
  service_->opened(id, TunnelEnd::kViewer);
  service_->opened(id, TunnelEnd::kDevice);
  // The link's event may overtake the leg's last bytes: nothing is cut off.
  service_->on_gateway_tunnel_event("branch-1", id, "ended", "gateway_stopping");
  EXPECT_EQ(service_->active_sessions()[0].state, "spliced");
  service_->received(id, TunnelEnd::kDevice, "last frame");
  service_->closed(id, TunnelEnd::kDevice);
  auto w = service_->take(id, TunnelEnd::kViewer);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Write>(w));
  EXPECT_EQ(std::get<TunnelSplice::Write>(w).data, "last frame");
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Close>(service_->take(id, TunnelEnd::kViewer)));
  service_->closed(id, TunnelEnd::kViewer);
  EXPECT_EQ(service_->session_count(), 0u);
  EXPECT_EQ(audit()[0].end_reason, "gateway_stopping") << "the gateway's reason is the first";
  EXPECT_TRUE(gateways_.closed.empty()) << "the gateway ended it";
}

TEST_F(ShadowServiceTest, AFailedLegEndsTheBrowsersSession) {
  live_.gateway_of[kDeviceA] = "branch-1";
  for (bool at_once : {false, true}) {
    SCOPED_TRACE(at_once ? "refused at once" : "failed later");
    transport_.refuse_connect = at_once;
    gateways_.closed.clear();
    notified_.clear();
    Answer answer = start(kDeviceA, "ums.example:8443", protocol::ViewerKind::kBrowser);
    const std::string id = last_start().session_id;
    live_.requests.back().done(ok_result(json::object()));
    const std::string url = answer.body()["viewer_url"];
    ASSERT_TRUE(
        service_->join(id, TunnelEnd::kViewer, url.substr(url.find("token=") + 6), "").ok());
    service_->opened(id, TunnelEnd::kViewer);
    if (!at_once) {
      EXPECT_EQ(service_->session_count(), 1u);
      service_->connect_failed(id, TunnelEnd::kDevice, "certificate verify failed");
    }
    auto c = service_->take(id, TunnelEnd::kViewer);
    ASSERT_TRUE(std::holds_alternative<TunnelSplice::Close>(c));
    EXPECT_EQ(std::get<TunnelSplice::Close>(c).code, 1011);
    service_->closed(id, TunnelEnd::kViewer);
    EXPECT_EQ(service_->session_count(), 0u);
    const auto row = audit()[0];
    EXPECT_EQ(row.end_reason, "gateway_unreachable");
    EXPECT_NE(row.end_message.find("gateway branch-1"), std::string::npos) << row.end_message;
    EXPECT_NE(row.end_message.find(at_once ? "no route to host" : "certificate verify failed"),
              std::string::npos)
        << row.end_message;
    ASSERT_EQ(gateways_.closed.size(), 1u);
    EXPECT_EQ(gateways_.closed[0][2], "gateway_unreachable");
    ASSERT_EQ(notified_.size(), 1u) << "the device stops what it started";
  }
}

TEST_F(ShadowServiceTest, ALegThatOpensAfterTheSessionEndedIsClosed) {
  live_.gateway_of[kDeviceA] = "branch-1";
  Answer answer = start(kDeviceA, "ums.example:8443", protocol::ViewerKind::kBrowser);
  const std::string id = last_start().session_id;
  live_.requests.back().done(ok_result(json::object()));
  const std::string url = answer.body()["viewer_url"];
  ASSERT_TRUE(service_->join(id, TunnelEnd::kViewer, url.substr(url.find("token=") + 6), "").ok());
  service_->opened(id, TunnelEnd::kViewer);
  service_->closed(id, TunnelEnd::kViewer);
  EXPECT_EQ(service_->session_count(), 1u) << "waits for the leg that is connecting";
  service_->opened(id, TunnelEnd::kDevice);
  auto c = service_->take(id, TunnelEnd::kDevice);
  ASSERT_TRUE(std::holds_alternative<TunnelSplice::Close>(c));
  service_->closed(id, TunnelEnd::kDevice);
  EXPECT_EQ(service_->session_count(), 0u);
  EXPECT_EQ(audit()[0].end_reason, "viewer_closed");
}

TEST_F(ShadowServiceTest, AGatewayWhoseLinkIsDownOrUnknownRefusesClearly) {
  live_.gateway_of[kDeviceA] = "branch-1";
  gateways_.links_up.clear();
  Answer down = start();
  ASSERT_TRUE(down.answered());
  EXPECT_EQ(down.status(), 503);
  EXPECT_EQ(down.body()["error"]["message"], "gateway branch-1 is not connected");
  EXPECT_TRUE(live_.requests.empty()) << "the device is not asked";
  EXPECT_EQ(service_->session_count(), 0u);
  EXPECT_EQ(audit()[0].end_reason, "unavailable");

  live_.gateway_of[kDeviceA] = "gone-gw";
  Answer unknown = start();
  EXPECT_EQ(unknown.status(), 503);
  EXPECT_NE(unknown.body()["error"]["message"].get<std::string>().find("gone-gw"),
            std::string::npos);
  service_->set_gateways(nullptr);
  live_.gateway_of[kDeviceA] = "branch-1";
  EXPECT_EQ(start().status(), 503);
  EXPECT_TRUE(live_.requests.empty());
}

TEST_F(ShadowServiceTest, EndingAGatewaySessionClosesItAtTheGateway) {
  live_.gateway_of[kDeviceA] = "branch-1";
  live_.gateway_of[kDeviceB] = "branch-1";
  auto [id_a, viewer_a] = accepted_session(kDeviceA);
  auto [id_b, viewer_b] = accepted_session(kDeviceB);
  EXPECT_TRUE(service_->end_by_admin(id_a));
  service_->on_device_stop(kDeviceB, protocol::ShadowStop{id_b, "vnc_exited", "status 1"});
  ASSERT_EQ(gateways_.closed.size(), 2u);
  EXPECT_EQ(gateways_.closed[0], (std::array<std::string, 3>{"branch-1", id_a, "admin"}));
  EXPECT_EQ(gateways_.closed[1], (std::array<std::string, 3>{"branch-1", id_b, "vnc_exited"}));
  EXPECT_EQ(service_->session_count(), 0u);

  auto [id_c, viewer_c] = accepted_session(kDeviceA);
  auto [id_d, viewer_d] = accepted_session(kDeviceB);
  service_->on_gateway_tunnel_event("branch-1", id_d, "device_joined", "");
  service_->expire(std::chrono::steady_clock::now() + std::chrono::seconds(31));
  ASSERT_EQ(gateways_.closed.size(), 4u);
  for (std::size_t i : {std::size_t{2}, std::size_t{3}}) {
    EXPECT_EQ(gateways_.closed[i][2], "peer_timeout");
  }

  auto [id_e, viewer_e] = accepted_session(kDeviceA);
  service_->stop_all();
  ASSERT_EQ(gateways_.closed.size(), 5u);
  EXPECT_EQ(gateways_.closed[4], (std::array<std::string, 3>{"branch-1", id_e, "server_stopping"}));
  // Each session was closed at the gateway once.
  std::set<std::string> ids;
  for (const auto& c : gateways_.closed) ids.insert(c[1]);
  EXPECT_EQ(ids.size(), 5u);
}

TEST(TunnelOriginTest, OnlyTheServersOwnOriginOrNone) {
  EXPECT_TRUE(tunnel_origin_allowed(std::nullopt, "ums:8443"));
  EXPECT_TRUE(tunnel_origin_allowed(std::string("https://ums:8443"), "ums:8443"));
  EXPECT_TRUE(tunnel_origin_allowed(std::string("https://UMS:8443"), "ums:8443"));
  EXPECT_FALSE(tunnel_origin_allowed(std::string("https://evil.example"), "ums:8443"));
  EXPECT_FALSE(tunnel_origin_allowed(std::string("http://ums:8443"), "ums:8443"));
  EXPECT_FALSE(tunnel_origin_allowed(std::string("https://ums:8443.evil"), "ums:8443"));
  EXPECT_FALSE(tunnel_origin_allowed(std::string("null"), "ums:8443"));
  EXPECT_FALSE(tunnel_origin_allowed(std::string("https://ums:8443"), ""));
}

TEST(TunnelPathTest, ParsesTheTwoEnds) {
  auto d = parse_tunnel_path("/tunnel/device/abcDEF-_123");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->end, TunnelEnd::kDevice);
  EXPECT_EQ(d->session_id, "abcDEF-_123");
  auto v = parse_tunnel_path("/tunnel/viewer/x");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->end, TunnelEnd::kViewer);
  EXPECT_FALSE(parse_tunnel_path("/tunnel/viewer/"));
  EXPECT_FALSE(parse_tunnel_path("/tunnel/viewer/a/b"));
  EXPECT_FALSE(parse_tunnel_path("/tunnel/other/a"));
  EXPECT_FALSE(parse_tunnel_path("/up"));
}

}  // namespace
}  // namespace tether::server

namespace tether::server {
namespace {

TEST_F(ShadowServiceTest, OrphanedAuditRowsEndAsServerLost) {
  // A session running here, and rows another server left: open (lost), open but running on a
  // live instance, open but too recent to judge, and one that ended properly.
  const auto [running_here, token] = accepted_session();
  (void)token;
  auto row = [&](const std::string& id, std::int64_t requested_at, bool ended) {
    ShadowAuditRecord r;
    r.session_id = id;
    r.device_id = kDeviceB;
    r.admin = "bob";
    r.viewer = "browser";
    r.requested_at = requested_at;
    if (ended) {
      r.ended_at = requested_at + 5;
      r.end_reason = "viewer_closed";
    }
    ASSERT_TRUE(store_->save_shadow_audit(r).ok());
  };
  row("lost", clock_ - 600, false);
  row("elsewhere", clock_ - 600, false);
  row("recent", clock_ - 10, false);
  row("done", clock_ - 600, true);

  auto ended = service_->end_orphaned_audit({"elsewhere"}, clock_ - 120);
  ASSERT_TRUE(ended.ok()) << ended.error().message;
  EXPECT_EQ(*ended, 1);
  std::map<std::string, ShadowAuditRecord> by_id;
  for (auto& r : audit()) by_id[r.session_id] = r;
  EXPECT_EQ(by_id["lost"].end_reason, "server_lost");
  EXPECT_EQ(by_id["lost"].ended_at, clock_);
  EXPECT_FALSE(by_id["elsewhere"].ended_at.has_value());
  EXPECT_FALSE(by_id["recent"].ended_at.has_value());
  EXPECT_EQ(by_id["done"].end_reason, "viewer_closed");
  EXPECT_FALSE(by_id[running_here].ended_at.has_value());
  // Nothing left to do the second time.
  EXPECT_EQ(service_->end_orphaned_audit({"elsewhere"}, clock_ - 120).value(), 0);
}

}  // namespace
}  // namespace tether::server
