#include "server/SqliteStore.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "TempDir.h"

namespace tether::server {
namespace {

using tether::testing::mode_of;
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

TEST(SqliteStoreTest, DeviceLifecycle) {
  TempDir dir;
  auto store = std::move(SqliteStore::open(dir / "tether.db")).value();
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
  EXPECT_EQ(store->list_devices().value().size(), 1u);
  EXPECT_TRUE(store->revoke_device(id, true).value());
  EXPECT_TRUE(store->list_devices().value().empty());
  EXPECT_TRUE(store->find_device(id).value()->deleted);  // still known: its key stays refused
  EXPECT_FALSE(store->revoke_device(std::string(64, '2'), false).value());
}

TEST(SqliteStoreTest, TokensAreSingleUseAndExpire) {
  TempDir dir;
  auto store = std::move(SqliteStore::open(dir / "tether.db")).value();
  ASSERT_TRUE(store->insert_enrollment_token(token("t1", 1000)).ok());
  ASSERT_TRUE(store->insert_enrollment_token(token("t2", 1000)).ok());
  EXPECT_FALSE(store->insert_enrollment_token(token("t1", 1000)).ok());  // same id and hash

  EXPECT_EQ(store->redeem_token_and_enroll("t1", 500, device(std::string(64, '1'))).value(),
            EnrollOutcome::kEnrolled);
  EXPECT_EQ(store->redeem_token_and_enroll("t1", 501, device(std::string(64, '2'))).value(),
            EnrollOutcome::kTokenNotRedeemable);
  EXPECT_EQ(store->redeem_token_and_enroll("t2", 1000, device(std::string(64, '3'))).value(),
            EnrollOutcome::kTokenNotRedeemable);  // expires_at is exclusive
  EXPECT_FALSE(store->find_device(std::string(64, '2')).value().has_value());

  auto used = store->find_enrollment_token("hash-t1").value();
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(used->used_at, 500);
  EXPECT_EQ(used->used_by, std::string(64, '1'));
  EXPECT_FALSE(store->find_enrollment_token("hash-t2").value()->used_at.has_value());
  EXPECT_FALSE(store->find_enrollment_token("nope").value().has_value());

  EXPECT_EQ(store->purge_enrollment_tokens(1001).value(), 2);
  EXPECT_FALSE(store->find_enrollment_token("hash-t1").value().has_value());
}

TEST(SqliteStoreTest, ARevokedDeviceIsNotReEnrolledAndTheTokenIsNotSpent) {
  TempDir dir;
  auto store = std::move(SqliteStore::open(dir / "tether.db")).value();
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

TEST(SqliteStoreTest, CapsOverlongStrings) {
  TempDir dir;
  auto store = std::move(SqliteStore::open(dir / "tether.db")).value();
  ASSERT_TRUE(store->insert_enrollment_token(token("t1", 1000)).ok());
  auto d = device(std::string(64, '1'));
  d.hostname = std::string(10000, 'h');
  d.macs = std::vector<std::string>(1000, "52:54:00:12:34:56");
  ASSERT_EQ(store->redeem_token_and_enroll("t1", 500, d).value(), EnrollOutcome::kEnrolled);
  auto found = store->find_device(d.id).value();
  EXPECT_EQ(found->hostname.size(), 253u);
  EXPECT_EQ(found->macs.size(), 64u);
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
  EXPECT_GE(SqliteStore::latest_schema_version(), 3);
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
  (*store).reset();  // closed, and opened again: the new columns persist
  auto again = SqliteStore::open(path);
  ASSERT_TRUE(again.ok()) << again.error().message;
  found = (*again)->find_device(id).value();
  EXPECT_EQ(found->settings_json, R"({"shadow.view_only":"true"})");
  EXPECT_EQ(found->settings_error, "permission_denied: no");
}

TEST(SqliteStoreTest, SettingsDocumentAndError) {
  TempDir dir;
  auto store = std::move(SqliteStore::open(dir / "tether.db")).value();
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

}  // namespace
}  // namespace tether::server

// ---- gateways (migration 5) -------------------------------------------------------------

namespace tether::server {
namespace {

GatewayRecord gateway(const std::string& name, std::int64_t expires_at = 1000) {
  GatewayRecord g;
  g.name = name;
  g.url = "wss://" + name + ".example:8443";
  g.join_secret_sha256 = "secret-hash-" + name;
  g.join_expires_at = expires_at;
  g.created_at = 100;
  return g;
}

TEST(SqliteStoreGatewayTest, AddFindListRemove) {
  TempDir dir;
  auto store = std::move(SqliteStore::open(dir / "tether.db")).value();
  EXPECT_GE(SqliteStore::latest_schema_version(), 5);
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

TEST(SqliteStoreGatewayTest, JoiningIsSingleUseAndNeedsTheRightUnexpiredSecret) {
  TempDir dir;
  auto store = std::move(SqliteStore::open(dir / "tether.db")).value();
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

TEST(SqliteStoreGatewayTest, EnrollmentTokensKeepTheUrlTheyName) {
  TempDir dir;
  auto store = std::move(SqliteStore::open(dir / "tether.db")).value();
  EnrollmentTokenRecord t = token("t1", 500);
  t.server_url = "wss://gw.example:9443";
  ASSERT_TRUE(store->insert_enrollment_token(t).ok());
  ASSERT_TRUE(store->insert_enrollment_token(token("t2", 500)).ok());
  EXPECT_EQ(store->find_enrollment_token("hash-t1").value()->server_url, "wss://gw.example:9443");
  EXPECT_EQ(store->find_enrollment_token("hash-t2").value()->server_url, "");
}

}  // namespace
}  // namespace tether::server
