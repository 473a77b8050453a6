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

}  // namespace
}  // namespace tether::server
