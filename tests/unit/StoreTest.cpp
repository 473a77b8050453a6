// The Store contract (server/Store.h) on both backends: every TEST_P runs on SQLite and on
// PostgreSQL (a fresh database of the fixture's cluster, tests/unit/PgTestSupport.h), then the
// tests that only one backend has (its migrations, PostgreSQL's concurrent start and
// reconnect).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <latch>
#include <thread>

#include "PgTestSupport.h"
#include "TempDir.h"
#include "server/PostgresStore.h"
#include "server/ServerConfig.h"
#include "server/SqliteStore.h"
#include "server/StoreFactory.h"
#include "server/UserApi.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using tether::testing::mode_of;
using tether::testing::PgTestDatabase;
using tether::testing::TempDir;

EnrolledDevice device(const std::string& id) {
  EnrolledDevice d;
  d.id = id;
  d.hostname = "tc-1";
  d.macs = {"52:54:00:12:34:56"};
  d.address = "10.0.0.5";
  d.cert_serial = "abc";
  d.cert_expires = 2000;
  d.new_online_key = std::string(64, 'a');
  return d;
}

EnrollmentTokenRecord token(const std::string& id, std::int64_t expires_at) {
  EnrollmentTokenRecord t;
  t.id = id;
  t.secret_sha256 = "hash-" + id;
  t.created_at = 100;
  t.expires_at = expires_at;
  return t;
}

GatewayRecord gateway(const std::string& name, std::int64_t expires_at = 1000) {
  GatewayRecord g;
  g.name = name;
  g.url = "wss://" + name + ".example:8443";
  g.join_secret_sha256 = "secret-hash-" + name;
  g.join_expires_at = expires_at;
  g.created_at = 100;
  return g;
}

ApiSessionRecord api_session(const std::string& digest_char, const std::string& principal,
                             bool admin, std::int64_t expires_at) {
  return ApiSessionRecord{std::string(64, digest_char[0]), principal, admin, 100, expires_at};
}

bool pg_configured() {
  return std::getenv("TETHER_PG_FIXTURE") != nullptr || std::getenv("TETHER_PG_URL") != nullptr;
}

// The PostgreSQL cases fail when a cluster was promised (under ctest) and not there; they are
// skipped, saying why, only when the binary runs alone without one.
#define TETHER_REQUIRE_PG(db)       \
  do {                              \
    if (!(db).ok()) {               \
      if (pg_configured()) {        \
        FAIL() << (db).why();       \
      } else {                      \
        GTEST_SKIP() << (db).why(); \
      }                             \
    }                               \
  } while (0)

// One store per test, on the backend named by the parameter; open_another() is a second
// connection to the same database (another server instance).
class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      pg_ = std::make_unique<PgTestDatabase>();
      TETHER_REQUIRE_PG(*pg_);
    }
    store_ = open_another();
    ASSERT_NE(store_, nullptr);
  }

  std::unique_ptr<Store> open_another() {
    if (GetParam() == "postgresql") {
      auto opened = PostgresStore::open(pg_->url());
      EXPECT_TRUE(opened.ok()) << opened.error().message;
      if (!opened.ok()) return nullptr;
      return std::move(opened).value();
    }
    auto opened = SqliteStore::open(dir_ / "tether.db");
    EXPECT_TRUE(opened.ok()) << opened.error().message;
    if (!opened.ok()) return nullptr;
    return std::move(opened).value();
  }

  TempDir dir_;
  std::unique_ptr<PgTestDatabase> pg_;
  std::unique_ptr<Store> store_;
};

std::string backend_name(const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values("sqlite", "postgresql"),
                         backend_name);

TEST_P(StoreTest, DeviceLifecycle) {
  Store* store = store_.get();
  ASSERT_TRUE(store->insert_enrollment_token(token("t1", 1000)).ok());
  ASSERT_TRUE(store->insert_enrollment_token(token("t2", 1000)).ok());
  const std::string id(64, '1');
  EXPECT_EQ(store->redeem_token_and_enroll("t1", 500, device(id)).value(),
            EnrollOutcome::kEnrolled);

  auto found = store->find_device(id).value();
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->hostname, "tc-1");
  EXPECT_EQ(found->macs, std::vector<std::string>{"52:54:00:12:34:56"});
  EXPECT_EQ(found->first_seen, 500);
  EXPECT_EQ(found->online_key, std::string(64, 'a'));
  EXPECT_FALSE(found->revoked);

  DeviceHelloRecord hello{id, "tc-renamed", "1.2.3", "Debian 12", "10.0.0.9", 600};
  ASSERT_TRUE(store->record_hello(hello).ok());
  ASSERT_TRUE(store->update_certificate(id, "def", 3000).ok());
  ASSERT_TRUE(store->update_inventory(id, R"({"cpu_count":4})").ok());
  ASSERT_TRUE(store->record_activity({{id, 700, "10.0.0.10", R"({"uptime_s":1})"}}).ok());
  // An older timestamp never moves last_seen back; an empty status keeps the stored one.
  ASSERT_TRUE(store->record_activity({{id, 650, "", ""}}).ok());
  found = store->find_device(id).value();
  EXPECT_EQ(found->hostname, "tc-renamed");
  EXPECT_EQ(found->agent_version, "1.2.3");
  EXPECT_EQ(found->os, "Debian 12");
  EXPECT_EQ(found->address, "10.0.0.10");
  EXPECT_EQ(found->last_seen, 700);
  EXPECT_EQ(found->cert_serial, "def");
  EXPECT_EQ(found->cert_expires, 3000);
  EXPECT_EQ(found->inventory_json, R"({"cpu_count":4})");
  EXPECT_EQ(found->status_json, R"({"uptime_s":1})");

  // Re-enrolling keeps the online key and first_seen.
  auto again = device(id);
  again.new_online_key = std::string(64, 'b');
  EXPECT_EQ(store->redeem_token_and_enroll("t2", 800, again).value(), EnrollOutcome::kEnrolled);
  found = store->find_device(id).value();
  EXPECT_EQ(found->online_key, std::string(64, 'a'));
  EXPECT_EQ(found->first_seen, 500);

  EXPECT_TRUE(store->revoke_device(id, false).value());
  EXPECT_TRUE(store->find_device(id).value()->revoked);
  EXPECT_FALSE(store->find_device(id).value()->deleted);
  EXPECT_EQ(store->list_devices().value().size(), 1u);
  EXPECT_TRUE(store->revoke_device(id, true).value());
  EXPECT_TRUE(store->list_devices().value().empty());
  EXPECT_TRUE(store->find_device(id).value()->deleted);  // still known: its key stays refused
  EXPECT_FALSE(store->revoke_device(std::string(64, '2'), false).value());
  EXPECT_FALSE(store->find_device(std::string(64, '2')).value().has_value());
}

TEST_P(StoreTest, DevicesAreListedByIdAndActivityIsWrittenInOneBatch) {
  for (const char* c : {"c", "a", "B", "b"}) {
    const std::string id(64, c[0]);
    ASSERT_TRUE(store_->insert_enrollment_token(token(std::string("t") + c, 1000)).ok());
    ASSERT_EQ(store_->redeem_token_and_enroll(std::string("t") + c, 500, device(id)).value(),
              EnrollOutcome::kEnrolled);
  }
  auto list = store_->list_devices().value();
  ASSERT_EQ(list.size(), 4u);
  // Byte order, whatever the database's collation.
  EXPECT_EQ(list[0].id[0], 'B');
  EXPECT_EQ(list[1].id[0], 'a');
  EXPECT_EQ(list[2].id[0], 'b');
  EXPECT_EQ(list[3].id[0], 'c');

  std::vector<DeviceActivity> batch;
  for (const char* c : {"a", "b", "c"}) batch.push_back({std::string(64, c[0]), 900, "", "{}"});
  batch.push_back({std::string(64, 'z'), 900, "", "{}"});  // unknown: nothing to update
  ASSERT_TRUE(store_->record_activity(batch).ok());
  ASSERT_TRUE(store_->record_activity({}).ok());
  EXPECT_EQ(store_->find_device(std::string(64, 'b')).value()->last_seen, 900);
  EXPECT_EQ(store_->find_device(std::string(64, 'B')).value()->last_seen, 500);
  EXPECT_EQ(store_->find_device(std::string(64, 'c')).value()->status_json, "{}");
}

TEST_P(StoreTest, TokensAreSingleUseAndExpire) {
  Store* store = store_.get();
  ASSERT_TRUE(store->insert_enrollment_token(token("t1", 1000)).ok());
  ASSERT_TRUE(store->insert_enrollment_token(token("t2", 1000)).ok());
  EXPECT_FALSE(store->insert_enrollment_token(token("t1", 1000)).ok());  // same id and hash

  EXPECT_EQ(store->redeem_token_and_enroll("t1", 500, device(std::string(64, '1'))).value(),
            EnrollOutcome::kEnrolled);
  EXPECT_EQ(store->redeem_token_and_enroll("t1", 501, device(std::string(64, '2'))).value(),
            EnrollOutcome::kTokenNotRedeemable);
  EXPECT_EQ(store->redeem_token_and_enroll("t2", 1000, device(std::string(64, '3'))).value(),
            EnrollOutcome::kTokenNotRedeemable);  // expires_at is exclusive
  EXPECT_EQ(store->redeem_token_and_enroll("nope", 500, device(std::string(64, '4'))).value(),
            EnrollOutcome::kTokenNotRedeemable);
  EXPECT_FALSE(store->find_device(std::string(64, '2')).value().has_value());

  auto used = store->find_enrollment_token("hash-t1").value();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->id, "t1");
  EXPECT_EQ(used->created_at, 100);
  EXPECT_EQ(used->expires_at, 1000);
  EXPECT_EQ(used->used_at, 500);
  EXPECT_EQ(used->used_by, std::string(64, '1'));
  EXPECT_EQ(used->mac, "");
  EXPECT_FALSE(store->find_enrollment_token("hash-t2").value()->used_at.has_value());
  EXPECT_FALSE(store->find_enrollment_token("nope").value().has_value());

  EXPECT_EQ(store->purge_enrollment_tokens(1000).value(), 0);  // "before" is exclusive
  EXPECT_EQ(store->purge_enrollment_tokens(1001).value(), 2);
  EXPECT_FALSE(store->find_enrollment_token("hash-t1").value().has_value());
}

TEST_P(StoreTest, ARevokedDeviceIsNotReEnrolledAndTheTokenIsNotSpent) {
  Store* store = store_.get();
  ASSERT_TRUE(store->insert_enrollment_token(token("t1", 1000)).ok());
  ASSERT_TRUE(store->insert_enrollment_token(token("t2", 1000)).ok());
  const std::string id(64, '1');
  ASSERT_EQ(store->redeem_token_and_enroll("t1", 500, device(id)).value(),
            EnrollOutcome::kEnrolled);
  ASSERT_TRUE(store->revoke_device(id, false).value());
  EXPECT_EQ(store->redeem_token_and_enroll("t2", 600, device(id)).value(),
            EnrollOutcome::kDeviceRevoked);
  EXPECT_FALSE(store->find_enrollment_token("hash-t2").value()->used_at.has_value());
}

TEST_P(StoreTest, CapsOverlongStrings) {
  Store* store = store_.get();
  ASSERT_TRUE(store->insert_enrollment_token(token("t1", 1000)).ok());
  auto d = device(std::string(64, '1'));
  d.hostname = std::string(10000, 'h');
  d.macs = std::vector<std::string>(1000, "52:54:00:12:34:56");
  ASSERT_EQ(store->redeem_token_and_enroll("t1", 500, d).value(), EnrollOutcome::kEnrolled);
  auto found = store->find_device(d.id).value();
  EXPECT_EQ(found->hostname.size(), 253u);
  EXPECT_EQ(found->macs.size(), 64u);
  // A cut never splits a UTF-8 sequence.
  DeviceHelloRecord hello{d.id, std::string(252, 'h') + "\xC3\xA9", "1", "os", "10.0.0.1", 600};
  ASSERT_TRUE(store->record_hello(hello).ok());
  EXPECT_EQ(store->find_device(d.id).value()->hostname, std::string(252, 'h'));
  EXPECT_EQ(store->update_inventory(d.id, std::string(600 * 1024, 'x')).error().code,
            Errc::kTooLarge);
}

TEST_P(StoreTest, SettingsDocumentAndError) {
  Store* store = store_.get();
  ASSERT_TRUE(store->insert_enrollment_token(token("t1", 1000)).ok());
  const std::string id(64, '1');
  ASSERT_EQ(store->redeem_token_and_enroll("t1", 500, device(id)).value(),
            EnrollOutcome::kEnrolled);
  EXPECT_FALSE(store->find_device(id).value()->settings_json.has_value());

  ASSERT_TRUE(store->set_settings_error(id, "bad_value: x").ok());
  // A new document clears the error: nothing is known yet about how the device takes it.
  ASSERT_TRUE(store->update_settings(id, "{}").ok());
  auto found = store->find_device(id).value();
  EXPECT_EQ(found->settings_json, "{}");  // managed, and empty: still pushed
  EXPECT_EQ(found->settings_error, "");
  ASSERT_TRUE(store->set_settings_error(id, "bad_value: x").ok());
  EXPECT_EQ(store->find_device(id).value()->settings_error, "bad_value: x");
  ASSERT_TRUE(store->set_settings_error(id, "").ok());
  EXPECT_EQ(store->find_device(id).value()->settings_error, "");
  // Re-enrolling keeps the document.
  ASSERT_TRUE(store->update_settings(id, R"({"a.b":"c"})").ok());
  ASSERT_TRUE(store->insert_enrollment_token(token("t2", 1000)).ok());
  ASSERT_EQ(store->redeem_token_and_enroll("t2", 600, device(id)).value(),
            EnrollOutcome::kEnrolled);
  EXPECT_EQ(store->find_device(id).value()->settings_json, R"({"a.b":"c"})");

  EXPECT_EQ(store->update_settings(std::string(64, '2'), "{}").error().code, Errc::kNotFound);
  EXPECT_EQ(store->set_settings_error(std::string(64, '2'), "x").error().code, Errc::kNotFound);
}

TEST_P(StoreTest, UsersAreKeptByName) {
  EXPECT_TRUE(store_->insert_user({"bob", "h1", 10}).value());
  EXPECT_FALSE(store_->insert_user({"bob", "h2", 11}).value());
  EXPECT_TRUE(store_->insert_user({"alice", "h3", 12}).value());
  EXPECT_TRUE(store_->insert_user({"Zed", "h4", 13}).value());
  auto users = store_->list_users().value();
  ASSERT_EQ(users.size(), 3u);
  EXPECT_EQ(users[0].name, "Zed");  // byte order
  EXPECT_EQ(users[1].name, "alice");
  EXPECT_EQ(users[1].created_at, 12);
  EXPECT_EQ(store_->find_user("bob").value()->password_hash, "h1");
  EXPECT_FALSE(store_->find_user("carol").value().has_value());
  EXPECT_TRUE(store_->delete_user("bob").value());
  EXPECT_FALSE(store_->delete_user("bob").value());
}

TEST_P(StoreTest, ShadowAuditIsNewestFirstAndUpdatedInPlace) {
  ShadowAuditRecord a;
  a.session_id = "s1";
  a.device_id = std::string(64, '1');
  a.hostname = "tc-1";
  a.admin = "admin";
  a.viewer = "browser";
  a.requested_at = 100;
  ASSERT_TRUE(store_->save_shadow_audit(a).ok());
  ShadowAuditRecord b = a;
  b.session_id = "s2";
  b.device_id = std::string(64, '2');
  b.view_only = true;
  ASSERT_TRUE(store_->save_shadow_audit(b).ok());  // the same second: the later one first
  ShadowAuditRecord c = a;
  c.session_id = "s0";
  c.requested_at = 50;
  ASSERT_TRUE(store_->save_shadow_audit(c).ok());
  a.started_at = 101;
  a.ended_at = 160;
  a.bytes_to_viewer = 5'000'000'000;
  a.bytes_to_device = 7;
  a.end_reason = "viewer_closed";
  a.end_message = "bye";
  ASSERT_TRUE(store_->save_shadow_audit(a).ok());  // replaces s1, keeping its place

  auto all = store_->list_shadow_audit("", 10).value();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].session_id, "s2");
  EXPECT_TRUE(all[0].view_only);
  EXPECT_FALSE(all[0].started_at.has_value());
  EXPECT_EQ(all[0].end_reason, "");
  EXPECT_EQ(all[1].session_id, "s1");
  EXPECT_EQ(all[1].started_at, 101);
  EXPECT_EQ(all[1].ended_at, 160);
  EXPECT_EQ(all[1].bytes_to_viewer, 5'000'000'000);
  EXPECT_EQ(all[1].bytes_to_device, 7);
  EXPECT_EQ(all[1].end_reason, "viewer_closed");
  EXPECT_EQ(all[1].end_message, "bye");
  EXPECT_FALSE(all[1].view_only);
  EXPECT_EQ(all[2].session_id, "s0");
  EXPECT_EQ(store_->list_shadow_audit("", 2).value().size(), 2u);
  auto one = store_->list_shadow_audit(std::string(64, '2'), 10).value();
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].session_id, "s2");
}

TEST_P(StoreTest, GatewaysAddFindListRemove) {
  Store* store = store_.get();
  EXPECT_TRUE(store->list_gateways().value().empty());
  EXPECT_TRUE(store->insert_gateway(gateway("zeta")).value());
  EXPECT_TRUE(store->insert_gateway(gateway("alpha")).value());
  EXPECT_FALSE(store->insert_gateway(gateway("alpha")).value()) << "the name is taken";

  auto found = store->find_gateway("alpha").value();
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->url, "wss://alpha.example:8443");
  EXPECT_EQ(found->join_secret_sha256, "secret-hash-alpha");
  EXPECT_EQ(found->join_expires_at, 1000);
  EXPECT_EQ(found->joined_at, 0);
  EXPECT_EQ(found->cert_fingerprint, "");
  EXPECT_EQ(found->created_at, 100);
  EXPECT_FALSE(store->find_gateway("beta").value().has_value());

  auto list = store->list_gateways().value();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "alpha");
  EXPECT_EQ(list[1].name, "zeta");

  EXPECT_TRUE(store->remove_gateway("zeta").value());
  EXPECT_FALSE(store->remove_gateway("zeta").value());
  EXPECT_EQ(store->list_gateways().value().size(), 1u);
}

TEST_P(StoreTest, GatewayJoiningIsSingleUseAndNeedsTheRightUnexpiredSecret) {
  Store* store = store_.get();
  ASSERT_TRUE(store->insert_gateway(gateway("gw", 1000)).value());
  EXPECT_FALSE(store->mark_gateway_joined("gw", "wrong-hash", 500, "fp").value());
  EXPECT_FALSE(store->mark_gateway_joined("gw", "secret-hash-gw", 1000, "fp").value())
      << "expired at 1000";
  EXPECT_FALSE(store->mark_gateway_joined("nope", "secret-hash-gw", 500, "fp").value());
  EXPECT_FALSE(store->mark_gateway_joined("gw", "", 500, "fp").value());
  EXPECT_TRUE(store->mark_gateway_joined("gw", "secret-hash-gw", 999, "fp1").value());
  EXPECT_FALSE(store->mark_gateway_joined("gw", "secret-hash-gw", 999, "fp2").value())
      << "single use";

  auto found = store->find_gateway("gw").value();
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->joined_at, 999);
  EXPECT_EQ(found->cert_fingerprint, "fp1");
  EXPECT_EQ(found->join_secret_sha256, "") << "the secret's hash is forgotten once used";
}

TEST_P(StoreTest, EnrollmentTokensKeepTheUrlAndMacTheyName) {
  EnrollmentTokenRecord t = token("t1", 500);
  t.server_url = "wss://gw.example:9443";
  t.mac = "52:54:00:12:34:56";
  ASSERT_TRUE(store_->insert_enrollment_token(t).ok());
  ASSERT_TRUE(store_->insert_enrollment_token(token("t2", 500)).ok());
  auto found = store_->find_enrollment_token("hash-t1").value();
  EXPECT_EQ(found->server_url, "wss://gw.example:9443");
  EXPECT_EQ(found->mac, "52:54:00:12:34:56");
  EXPECT_EQ(store_->find_enrollment_token("hash-t2").value()->server_url, "");
}

TEST_P(StoreTest, ApiSessionsExpireAreCappedAndEndWithTheirUser) {
  ASSERT_TRUE(store_->insert_api_session(api_session("a", "alice", false, 1000), 100, 3).ok());
  ASSERT_TRUE(store_->insert_api_session(api_session("b", "admin", true, 900), 100, 3).ok());
  ASSERT_TRUE(store_->insert_api_session(api_session("c", "alice", false, 900), 100, 3).ok());
  auto found = store_->find_api_session(std::string(64, 'a'), 100).value();
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->principal, "alice");
  EXPECT_FALSE(found->admin);
  EXPECT_EQ(found->created_at, 100);
  EXPECT_EQ(found->expires_at, 1000);
  EXPECT_TRUE(store_->find_api_session(std::string(64, 'b'), 100).value()->admin);
  EXPECT_FALSE(store_->find_api_session(std::string(64, 'a'), 1000).value().has_value())
      << "expired at 1000";
  EXPECT_FALSE(store_->find_api_session(std::string(64, 'x'), 100).value().has_value());
  EXPECT_EQ(store_->count_api_sessions(100).value(), 3);
  EXPECT_EQ(store_->count_api_sessions(950).value(), 1);

  // Full (3): the one closest to its end goes, the older of two equals first (b before c).
  ASSERT_TRUE(store_->insert_api_session(api_session("d", "bob", false, 2000), 100, 3).ok());
  EXPECT_EQ(store_->count_api_sessions(100).value(), 3);
  EXPECT_FALSE(store_->find_api_session(std::string(64, 'b'), 100).value().has_value());
  EXPECT_TRUE(store_->find_api_session(std::string(64, 'c'), 100).value().has_value());
  // Expired ones go first, before anything live is pushed out.
  ASSERT_TRUE(store_->insert_api_session(api_session("e", "bob", false, 3000), 950, 3).ok());
  EXPECT_FALSE(store_->find_api_session(std::string(64, 'c'), 100).value().has_value());
  EXPECT_TRUE(store_->find_api_session(std::string(64, 'a'), 950).value().has_value());
  EXPECT_TRUE(store_->find_api_session(std::string(64, 'd'), 950).value().has_value());
  EXPECT_TRUE(store_->find_api_session(std::string(64, 'e'), 950).value().has_value());

  ASSERT_TRUE(store_->insert_api_session(api_session("f", "bob", true, 3000), 950, 10).ok());
  EXPECT_EQ(store_->delete_api_sessions_of("bob").value(), 2) << "not the admin-token one";
  EXPECT_TRUE(store_->find_api_session(std::string(64, 'f'), 950).value().has_value());
  EXPECT_TRUE(store_->delete_api_session(std::string(64, 'a')).value());
  EXPECT_FALSE(store_->delete_api_session(std::string(64, 'a')).value());
  EXPECT_EQ(store_->purge_api_sessions(2999).value(), 0);
  EXPECT_EQ(store_->purge_api_sessions(3000).value(), 1);
  EXPECT_EQ(store_->count_api_sessions(0).value(), 0);
}

// Two server instances on one store: a login on one holds on the other, and so do logout and
// removing the user.
TEST_P(StoreTest, ApiSessionsAreSharedBetweenInstances) {
  auto other_store = open_another();
  ASSERT_NE(other_store, nullptr);
  constexpr const char* kAdmin = "the-admin-token-0123456789abcdefghijklmnopq";
  UserApiSettings settings;
  settings.login_rate_per_minute = 100;
  UserApi one(*store_, AdminToken::from_value(kAdmin), settings);
  UserApi two(*other_store, AdminToken::from_value(kAdmin), settings);
  auto call = [](UserApi& api, const std::string& method, const std::string& path, const json& body,
                 const std::string& bearer) {
    HttpRequest req;
    req.method = method;
    req.path = "/api/v1/" + path;
    req.body = body.is_null() ? "" : body.dump();
    req.peer_address = "192.0.2.1";
    if (!bearer.empty()) req.authorization = "Bearer " + bearer;
    std::vector<std::string> parts = {path.substr(0, path.find('/'))};
    if (path.find('/') != std::string::npos) parts.push_back(path.substr(path.find('/') + 1));
    return api.route(req, parts, api.authenticate(req.authorization)).value_or(HttpResponse{});
  };
  ASSERT_EQ(
      call(one, "POST", "users", {{"name", "alice"}, {"password", "s3cret-pass"}}, kAdmin).status,
      201);
  auto login = call(one, "POST", "login", {{"name", "alice"}, {"password", "s3cret-pass"}}, "");
  ASSERT_EQ(login.status, 200) << login.body;
  const std::string session = json::parse(login.body)["session"];
  auto who = two.authenticate("Bearer " + session);
  ASSERT_TRUE(who.has_value()) << "a login on one instance holds on the other";
  EXPECT_EQ(who->name, "alice");
  EXPECT_FALSE(who->admin);
  EXPECT_EQ(two.session_count(), 1u);

  EXPECT_EQ(call(two, "POST", "logout", nullptr, session).status, 200);
  EXPECT_FALSE(one.authenticate("Bearer " + session).has_value());

  login = call(two, "POST", "login", {{"name", "alice"}, {"password", "s3cret-pass"}}, "");
  ASSERT_EQ(login.status, 200);
  const std::string again = json::parse(login.body)["session"];
  ASSERT_TRUE(one.authenticate("Bearer " + again).has_value());
  EXPECT_EQ(call(one, "DELETE", "users/alice", nullptr, kAdmin).status, 200);
  EXPECT_FALSE(two.authenticate("Bearer " + again).has_value());
}

// Connections racing for the same token or gateway secret (server instances enrolling the
// same device at once): exactly one wins.
TEST_P(StoreTest, RacingRedemptionsHaveOneWinner) {
  constexpr int kRacers = 6;
  std::vector<std::unique_ptr<Store>> stores;
  for (int i = 0; i < kRacers; ++i) {
    stores.push_back(open_another());
    ASSERT_NE(stores.back(), nullptr);
  }
  for (int round = 0; round < 3; ++round) {
    const std::string id = "race" + std::to_string(round);
    ASSERT_TRUE(store_->insert_enrollment_token(token(id, 1000)).ok());
    ASSERT_TRUE(store_->insert_gateway(gateway("gw" + std::to_string(round))).value());
    std::atomic<int> enrolled{0};
    std::atomic<int> refused{0};
    std::atomic<int> joined{0};
    std::atomic<int> failed{0};
    std::latch start(kRacers);
    std::vector<std::thread> threads;
    for (int i = 0; i < kRacers; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        auto outcome = stores[static_cast<std::size_t>(i)]->redeem_token_and_enroll(
            id, 500, device(std::string(62, '0') + std::to_string(round) + std::to_string(i)));
        if (!outcome.ok()) {
          ++failed;
        } else if (*outcome == EnrollOutcome::kEnrolled) {
          ++enrolled;
        } else if (*outcome == EnrollOutcome::kTokenNotRedeemable) {
          ++refused;
        }
        auto won = stores[static_cast<std::size_t>(i)]->mark_gateway_joined(
            "gw" + std::to_string(round), "secret-hash-gw" + std::to_string(round), 500,
            "fp" + std::to_string(i));
        if (!won.ok()) {
          ++failed;
        } else if (*won) {
          ++joined;
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(failed.load(), 0);
    EXPECT_EQ(enrolled.load(), 1);
    EXPECT_EQ(refused.load(), kRacers - 1);
    EXPECT_EQ(joined.load(), 1);
    const auto used = store_->find_enrollment_token("hash-" + id).value();
    ASSERT_TRUE(used.has_value());
    EXPECT_TRUE(store_->find_device(used->used_by).value().has_value())
        << "the winner's device is the one enrolled";
  }
  EXPECT_EQ(store_->list_devices().value().size(), 3u);
}

// ---- SQLite only --------------------------------------------------------------------------

TEST(SqliteStoreTest, MigratesAFreshDatabaseAndReopensIt) {
  TempDir dir;
  const std::string path = dir / "tether.db";
  {
    auto store = SqliteStore::open(path);
    ASSERT_TRUE(store.ok()) << store.error().message;
    EXPECT_EQ((*store)->schema_version().value(), SqliteStore::latest_schema_version());
  }
  EXPECT_EQ(mode_of(path), 0600u);
  auto again = SqliteStore::open(path);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ((*again)->schema_version().value(), SqliteStore::latest_schema_version());
}

TEST(SqliteStoreTest, RefusesADatabaseFromANewerServer) {
  TempDir dir;
  const std::string path = dir / "tether.db";
  ASSERT_TRUE(SqliteStore::open(path).ok());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 999", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto store = SqliteStore::open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("newer"), std::string::npos);
}

// The schema as version 1 (the first release) left it, written by hand: a database made by
// that server must move forward keeping its rows.
constexpr const char* kSchemaVersion1 = R"sql(
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL DEFAULT '',
  hostname TEXT NOT NULL DEFAULT '',
  agent_version TEXT NOT NULL DEFAULT '',
  os TEXT NOT NULL DEFAULT '',
  macs TEXT NOT NULL DEFAULT '[]',
  address TEXT NOT NULL DEFAULT '',
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  cert_serial TEXT NOT NULL DEFAULT '',
  cert_expires INTEGER NOT NULL DEFAULT 0,
  revoked INTEGER NOT NULL DEFAULT 0,
  deleted INTEGER NOT NULL DEFAULT 0,
  online_key TEXT NOT NULL,
  inventory TEXT,
  status TEXT
);
CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  secret_sha256 TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER,
  used_by TEXT,
  mac TEXT
);
CREATE INDEX enrollment_tokens_expiry ON enrollment_tokens (expires_at);
INSERT INTO devices (id, hostname, macs, first_seen, last_seen, cert_serial, online_key,
                     inventory)
  VALUES ('1111111111111111111111111111111111111111111111111111111111111111', 'tc-old',
          '["52:54:00:12:34:56"]', 10, 20, 'abc',
          'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', '{"cpu_count":2}');
PRAGMA user_version = 1;
)sql";

TEST(SqliteStoreTest, MigratesAVersion1DatabaseKeepingItsDevices) {
  TempDir dir;
  const std::string path = dir / "tether.db";
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, kSchemaVersion1, nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  auto store = SqliteStore::open(path);
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ((*store)->schema_version().value(), SqliteStore::latest_schema_version());
  EXPECT_GE(SqliteStore::latest_schema_version(), 6);
  const std::string id(64, '1');
  auto found = (*store)->find_device(id).value();
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->hostname, "tc-old");
  EXPECT_EQ(found->inventory_json, R"({"cpu_count":2})");
  EXPECT_EQ(found->online_key, std::string(64, 'a'));
  EXPECT_FALSE(found->settings_json.has_value());  // never managed: nothing to push
  EXPECT_EQ(found->settings_error, "");

  ASSERT_TRUE((*store)->update_settings(id, R"({"shadow.view_only":"true"})").ok());
  ASSERT_TRUE((*store)->set_settings_error(id, "permission_denied: no").ok());
  found = (*store)->find_device(id).value();
  EXPECT_EQ(found->settings_json, R"({"shadow.view_only":"true"})");
  EXPECT_EQ(found->settings_error, "permission_denied: no");
  // Sessions arrived with version 6: an upgraded database has them.
  ASSERT_TRUE((*store)->insert_api_session(api_session("a", "alice", false, 1000), 100, 3).ok());
  (*store).reset();  // closed, and opened again: the new columns persist
  auto again = SqliteStore::open(path);
  ASSERT_TRUE(again.ok()) << again.error().message;
  found = (*again)->find_device(id).value();
  EXPECT_EQ(found->settings_json, R"({"shadow.view_only":"true"})");
  EXPECT_EQ(found->settings_error, "permission_denied: no");
  EXPECT_TRUE((*again)->find_api_session(std::string(64, 'a'), 100).value().has_value());

  // The migrations applied here are recorded (2 to latest; 1 predates the record).
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT count(*), min(version), max(version) FROM "
                               "schema_migrations",
                               -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), SqliteStore::latest_schema_version() - 1);
  EXPECT_EQ(sqlite3_column_int(stmt, 1), 2);
  EXPECT_EQ(sqlite3_column_int(stmt, 2), SqliteStore::latest_schema_version());
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

// ---- PostgreSQL only ----------------------------------------------------------------------

TEST(PostgresStoreTest, MigratesAFreshDatabaseAndReopensIt) {
  PgTestDatabase db;
  TETHER_REQUIRE_PG(db);
  {
    auto store = PostgresStore::open(db.url());
    ASSERT_TRUE(store.ok()) << store.error().message;
    EXPECT_EQ((*store)->schema_version().value(), PostgresStore::latest_schema_version());
  }
  auto again = PostgresStore::open(db.url());
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ((*again)->schema_version().value(), PostgresStore::latest_schema_version());
  EXPECT_EQ(tether::testing::pg_value(db.url(), "SELECT count(*) FROM schema_migrations"),
            std::to_string(PostgresStore::latest_schema_version()));
  EXPECT_EQ(tether::testing::pg_value(
                db.url(), "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'cluster_%'"),
            "0")
      << "cluster_* tables belong to server/ClusterBus";
}

TEST(PostgresStoreTest, RefusesADatabaseFromANewerServer) {
  PgTestDatabase db;
  TETHER_REQUIRE_PG(db);
  ASSERT_TRUE(PostgresStore::open(db.url()).ok());
  ASSERT_EQ(tether::testing::pg_command(
                db.url(), "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)"),
            "");
  auto store = PostgresStore::open(db.url());
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("newer"), std::string::npos) << store.error().message;
}

// Several instances starting at the same moment on an empty database: each waits for the
// migration lock in turn; all start, and each migration is applied once.
TEST(PostgresStoreTest, InstancesStartingAtOnceApplyTheSchemaOnce) {
  PgTestDatabase db;
  TETHER_REQUIRE_PG(db);
  constexpr int kInstances = 6;
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  std::vector<pid_t> children;
  for (int i = 0; i < kInstances; ++i) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(go[1]);
      char c;
      (void)::read(go[0], &c, 1);  // returns at EOF: all of them at once
      auto store = PostgresStore::open(db.url());
      if (!store.ok()) std::fprintf(stderr, "instance %d: %s\n", i, store.error().message.c_str());
      ::_exit(store.ok() ? 0 : 1);
    }
    children.push_back(pid);
  }
  ::close(go[0]);
  const auto t0 = std::chrono::steady_clock::now();
  ::close(go[1]);
  int started = 0;
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ++started;
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  std::printf("%d instances opened the empty database at once in %lld ms\n", kInstances,
              static_cast<long long>(ms));
  EXPECT_EQ(started, kInstances);
  EXPECT_EQ(tether::testing::pg_value(db.url(), "SELECT count(*) FROM schema_migrations"),
            std::to_string(PostgresStore::latest_schema_version()));
  auto store = PostgresStore::open(db.url());
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ((*store)->schema_version().value(), PostgresStore::latest_schema_version());
}

TEST(PostgresStoreTest, ReconnectsOnceWhenTheConnectionIsLost) {
  PgTestDatabase db;
  TETHER_REQUIRE_PG(db);
  auto opened = PostgresStore::open(db.url());
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  auto& store = *opened;
  ASSERT_TRUE(store->insert_user({"bob", "h", 1}).value());
  const int before = store->backend_pid();
  // What a database restart or a dropped proxy connection looks like to the server.
  ASSERT_EQ(tether::testing::pg_command(
                db.url(), "SELECT pg_terminate_backend(" + std::to_string(before) + ")"),
            "");
  auto found = store->find_user("bob");
  ASSERT_TRUE(found.ok()) << found.error().message;
  EXPECT_TRUE(found->has_value());
  EXPECT_NE(store->backend_pid(), before);
  // Transactions work on the new connection too.
  ASSERT_TRUE(store->insert_enrollment_token(token("t1", 1000)).ok());
  ASSERT_TRUE(store->record_activity({{std::string(64, '1'), 1, "", ""}}).ok());
  ASSERT_TRUE(tether::testing::pg_command(db.url(), "SELECT pg_terminate_backend(" +
                                                        std::to_string(store->backend_pid()) + ")")
                  .empty());
  EXPECT_EQ(store->redeem_token_and_enroll("t1", 500, device(std::string(64, '1'))).value(),
            EnrollOutcome::kEnrolled)
      << "BEGIN is retried on a new connection";
}

TEST(PostgresStoreTest, ErrorsNameTheDatabaseButNeverThePassword) {
  EXPECT_EQ(PostgresStore::describe_url("postgresql://bob:hunter2@db.example:6543/tether"),
            "postgresql://bob@db.example:6543/tether");
  EXPECT_EQ(
      PostgresStore::describe_url("postgres://db.example/tether?password=hunter2&sslmode=require"),
      "postgresql://db.example/tether");
  EXPECT_EQ(PostgresStore::describe_url("host=db.example dbname=t user=u password=hunter2"),
            "postgresql://u@db.example/t");
  // A port nobody listens on (bound here, never listened on).
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  auto store = PostgresStore::open("postgresql://bob:hunter2@127.0.0.1:" + port + "/tether");
  ::close(fd);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.error().code, Errc::kUnavailable);
  const std::string& message = store.error().message;
  EXPECT_NE(message.find("postgresql://bob@127.0.0.1:" + port + "/tether"), std::string::npos)
      << message;
  EXPECT_EQ(message.find("hunter2"), std::string::npos) << message;
}

// ---- choosing the backend (store.url) -----------------------------------------------------

TEST(StoreFactoryTest, PicksTheBackendFromStoreUrl) {
  EXPECT_TRUE(is_postgres_url("postgresql://h/db"));
  EXPECT_TRUE(is_postgres_url("postgres://h/db"));
  EXPECT_FALSE(is_postgres_url("mysql://h/db"));
  EXPECT_FALSE(is_postgres_url(""));
  TempDir dir;
  auto sqlite = open_store("", dir.path());
  ASSERT_TRUE(sqlite.ok()) << sqlite.error().message;
  EXPECT_EQ(sqlite->description, "SQLite " + (dir / "tether.db"));
  EXPECT_NE(dynamic_cast<SqliteStore*>(sqlite->store.get()), nullptr);
  EXPECT_FALSE(open_store("sqlite:///x.db", dir.path()).ok());

  PgTestDatabase db;
  TETHER_REQUIRE_PG(db);
  auto pg = open_store(db.url(), dir.path());
  ASSERT_TRUE(pg.ok()) << pg.error().message;
  EXPECT_EQ(pg->description.rfind("PostgreSQL postgresql://", 0), 0u) << pg->description;
  EXPECT_NE(dynamic_cast<PostgresStore*>(pg->store.get()), nullptr);
}

TEST(StoreFactoryTest, ConfigRefusesOtherUrlsNamingTheLineButNotTheValue) {
  Config config(server_config_schema());
  ASSERT_TRUE(config.set("store.url", "mysql://u:hunter2@h/db", "server.conf:7").ok());
  auto settings = settings_from_config(config, "/tmp");
  ASSERT_FALSE(settings.ok());
  EXPECT_NE(settings.error().message.find("server.conf:7"), std::string::npos)
      << settings.error().message;
  EXPECT_EQ(settings.error().message.find("hunter2"), std::string::npos);

  Config pg(server_config_schema());
  ASSERT_TRUE(pg.set("store.url", "postgresql://u@h/db", "server.conf:8").ok());
  auto ok = settings_from_config(pg, "/tmp");
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->store_url, "postgresql://u@h/db");
  EXPECT_EQ(settings_from_config(Config(server_config_schema()), "/tmp")->store_url, "");
}

}  // namespace
}  // namespace tether::server
