#include "server/SqliteStore.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/UniqueFd.h"

namespace tether::server {
namespace {

// Each entry moves the schema from version i to i + 1, in its own transaction. Never edit a
// released entry: add a new one.
constexpr std::string_view kMigrations[] = {
    R"sql(
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
)sql",
    // 2: the settings document the server manages per device, and the device's refusal.
    R"sql(
ALTER TABLE devices ADD COLUMN settings TEXT;
ALTER TABLE devices ADD COLUMN settings_error TEXT;
)sql",
    // 3: web app users (server/UserApi.h).
    R"sql(
CREATE TABLE users (
  name TEXT PRIMARY KEY,
  password_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
)sql",
    // 4: the shadowing audit log (server/ShadowService.h).
    R"sql(
CREATE TABLE shadow_audit (
  session_id TEXT PRIMARY KEY,
  device_id TEXT NOT NULL,
  hostname TEXT NOT NULL DEFAULT '',
  admin TEXT NOT NULL DEFAULT '',
  viewer TEXT NOT NULL DEFAULT '',
  view_only INTEGER NOT NULL DEFAULT 0,
  requested_at INTEGER NOT NULL,
  started_at INTEGER,
  ended_at INTEGER,
  bytes_to_viewer INTEGER NOT NULL DEFAULT 0,
  bytes_to_device INTEGER NOT NULL DEFAULT 0,
  end_reason TEXT,
  end_message TEXT
);
CREATE INDEX shadow_audit_device ON shadow_audit (device_id, requested_at);
CREATE INDEX shadow_audit_requested ON shadow_audit (requested_at);
)sql",
    // 5: gateways (server/GatewayApi.h), and the URL an enrollment token names (a gateway's).
    R"sql(
CREATE TABLE gateways (
  name TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  join_secret_sha256 TEXT NOT NULL DEFAULT '',
  join_expires_at INTEGER NOT NULL DEFAULT 0,
  joined_at INTEGER NOT NULL DEFAULT 0,
  cert_fingerprint TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL
);
ALTER TABLE enrollment_tokens ADD COLUMN server_url TEXT;
)sql",
    // 6: web API sessions (server/UserApi.h), shared by every server instance on the store.
    R"sql(
CREATE TABLE api_sessions (
  token_sha256 TEXT PRIMARY KEY,
  principal TEXT NOT NULL,
  admin INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX api_sessions_expiry ON api_sessions (expires_at);
CREATE INDEX api_sessions_principal ON api_sessions (principal);
)sql",
};

// The history of the migrations applied, one row each (the version itself stays in PRAGMA
// user_version, which databases made before this table already carry).
constexpr std::string_view kMigrationHistory =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
    "applied_at INTEGER NOT NULL)";

// Agent-supplied strings are bounded by the protocol decoders already; these caps keep the
// database bounded even if a caller forgets.
constexpr std::size_t kMaxHostname = 253;
constexpr std::size_t kMaxVersion = 64;
constexpr std::size_t kMaxOs = 512;
constexpr std::size_t kMaxAddress = 64;
constexpr std::size_t kMaxMacs = 64;
constexpr std::size_t kMaxJson = 512 * 1024;
constexpr std::size_t kMaxSettingsError = 4096;

std::string cap(std::string_view text, std::size_t max) {
  if (text.size() <= max) return std::string(text);
  std::size_t end = max;
  // Do not cut a UTF-8 sequence in half.
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return std::string(text.substr(0, end));
}

Error db_error(sqlite3* db, std::string_view what) {
  const int code = sqlite3_errcode(db);
  const Errc errc = (code == SQLITE_BUSY || code == SQLITE_LOCKED) ? Errc::kUnavailable : Errc::kIo;
  std::string message = "database: " + std::string(what) + ": " + sqlite3_errmsg(db);
  if (code == SQLITE_FULL) {
    // SQLite rolled the statement back: nothing partial is stored. Say which disk is full.
    const char* file = sqlite3_db_filename(db, "main");
    message += std::string(" (") + (file ? file : "the database") + ": No space left on device)";
  }
  return make_error(errc, message);
}

struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }
};

// A prepared statement with chained binds; columns read by index.
class Statement {
 public:
  static Result<Statement> prepare(sqlite3* db, std::string_view sql) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw, nullptr) !=
        SQLITE_OK) {
      return db_error(db, "cannot prepare a statement");
    }
    return Statement(db, raw);
  }

  // Makes the statement ready to run again with new values.
  void reset() {
    sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
    ok_ = true;
  }

  Statement& bind(int index, std::string_view text) {
    if (ok_) {
      ok_ = sqlite3_bind_text(stmt_.get(), index, text.data(), static_cast<int>(text.size()),
                              SQLITE_TRANSIENT) == SQLITE_OK;
    }
    return *this;
  }
  Statement& bind(int index, std::int64_t value) {
    if (ok_) ok_ = sqlite3_bind_int64(stmt_.get(), index, value) == SQLITE_OK;
    return *this;
  }
  Statement& bind_null(int index) {
    if (ok_) ok_ = sqlite3_bind_null(stmt_.get(), index) == SQLITE_OK;
    return *this;
  }

  // true: a row is available; false: done.
  Result<bool> step() {
    if (!ok_) return db_error(db_, "cannot bind a value");
    const int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return db_error(db_, "statement failed");
  }
  Status run() {
    TETHER_ASSIGN_OR_RETURN(bool row, step());
    (void)row;
    return {};
  }

  [[nodiscard]] std::string text(int col) const {
    const auto* p = sqlite3_column_text(stmt_.get(), col);
    if (p == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(p),
                       static_cast<std::size_t>(sqlite3_column_bytes(stmt_.get(), col)));
  }
  [[nodiscard]] std::int64_t integer(int col) const {
    return sqlite3_column_int64(stmt_.get(), col);
  }
  [[nodiscard]] bool is_null(int col) const {
    return sqlite3_column_type(stmt_.get(), col) == SQLITE_NULL;
  }

 private:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, StmtFinalizer> stmt_;
  bool ok_ = true;
};

// BEGIN IMMEDIATE takes the write lock up front, so that two connections racing for the same
// row serialise here (waiting up to the busy timeout) instead of failing at COMMIT.
class Transaction {
 public:
  static Result<Transaction> begin(sqlite3* db) {
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return db_error(db, "cannot begin a transaction");
    }
    return Transaction(db);
  }
  Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction() {
    if (db_ != nullptr) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Status commit() {
    sqlite3* db = std::exchange(db_, nullptr);
    if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      Error e = db_error(db, "cannot commit");
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      return e;
    }
    return {};
  }

 private:
  explicit Transaction(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

constexpr const char* kDeviceColumns =
    "id, name, hostname, agent_version, os, macs, address, first_seen, last_seen, cert_serial, "
    "cert_expires, revoked, deleted, online_key, inventory, status, settings, settings_error";

std::string macs_to_json(const std::vector<std::string>& macs) {
  nlohmann::json arr = nlohmann::json::array();
  for (std::size_t i = 0; i < macs.size() && i < kMaxMacs; ++i) arr.push_back(cap(macs[i], 17));
  return arr.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<std::string> macs_from_json(const std::string& text) {
  std::vector<std::string> out;
  const auto doc = nlohmann::json::parse(text, nullptr, false);
  if (!doc.is_array()) return out;
  for (const auto& item : doc) {
    if (item.is_string()) out.push_back(item.get<std::string>());
  }
  return out;
}

DeviceRecord read_device(const Statement& s) {
  DeviceRecord d;
  d.id = s.text(0);
  d.name = s.text(1);
  d.hostname = s.text(2);
  d.agent_version = s.text(3);
  d.os = s.text(4);
  d.macs = macs_from_json(s.text(5));
  d.address = s.text(6);
  d.first_seen = s.integer(7);
  d.last_seen = s.integer(8);
  d.cert_serial = s.text(9);
  d.cert_expires = s.integer(10);
  d.revoked = s.integer(11) != 0;
  d.deleted = s.integer(12) != 0;
  d.online_key = s.text(13);
  d.inventory_json = s.text(14);
  d.status_json = s.text(15);
  if (!s.is_null(16)) d.settings_json = s.text(16);
  d.settings_error = s.text(17);
  return d;
}

}  // namespace

void SqliteStore::DbCloser::operator()(sqlite3* db) const noexcept {
  sqlite3_close_v2(db);
}

SqliteStore::SqliteStore(DbPtr db, std::string path) : db_(std::move(db)), path_(std::move(path)) {}
SqliteStore::~SqliteStore() = default;

int SqliteStore::latest_schema_version() {
  return static_cast<int>(std::size(kMigrations));
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path) {
  // Create the file ourselves so that it (and the -wal/-shm files SQLite derives from its
  // mode) is private from the start: it holds online keys and token hashes.
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) {
      return make_error(Errc::kIo, "cannot open database " + path + ": " + std::strerror(errno));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) == 0 && (st.st_mode & 077) != 0) {
      if (::fchmod(fd.get(), 0600) != 0) {
        return make_error(Errc::kIo, "cannot chmod " + path + ": " + std::strerror(errno));
      }
    }
  }
  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) {
    return make_error(Errc::kIo, "cannot open database " + path + ": " +
                                     (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_extended_result_codes(db.get(), 0);
  sqlite3_busy_timeout(db.get(), 5000);
  std::unique_ptr<SqliteStore> store(new SqliteStore(std::move(db), path));
  // Enrollment writes must survive a power cut (a lost "used" mark would let a token be
  // redeemed twice); heartbeats are batched, so FULL costs little.
  // The first statements that read the file: a damaged one fails here, named.
  auto pragmas = store->exec(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
      "PRAGMA foreign_keys=ON;");
  if (!pragmas.ok()) return pragmas.error().context(path);
  auto migrated = store->migrate();
  if (!migrated.ok()) return migrated.error().context(path);
  return store;
}

Status SqliteStore::exec(std::string_view sql) {
  const std::string text(sql);
  char* message = nullptr;
  if (sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    std::string detail = message ? message : "unknown error";
    sqlite3_free(message);
    return make_error(Errc::kIo, "database: " + detail);
  }
  return {};
}

Result<int> SqliteStore::schema_version() {
  TETHER_ASSIGN_OR_RETURN(auto stmt, Statement::prepare(db_.get(), "PRAGMA user_version"));
  TETHER_ASSIGN_OR_RETURN(bool row, stmt.step());
  return row ? static_cast<int>(stmt.integer(0)) : 0;
}

Status SqliteStore::migrate() {
  TETHER_ASSIGN_OR_RETURN(int version, schema_version());
  const int latest = latest_schema_version();
  if (version > latest) {
    return make_error(Errc::kConflict, "the database has schema version " +
                                           std::to_string(version) + ", newer than this server's " +
                                           std::to_string(latest) + "; upgrade tether-server");
  }
  for (int v = version; v < latest; ++v) {
    TETHER_ASSIGN_OR_RETURN(auto tx, Transaction::begin(db_.get()));
    auto applied = exec(kMigrations[v]);
    if (!applied.ok())
      return applied.error().context("migration to version " + std::to_string(v + 1));
    TETHER_TRY(exec("PRAGMA user_version = " + std::to_string(v + 1)));
    TETHER_TRY(exec(kMigrationHistory));
    TETHER_ASSIGN_OR_RETURN(auto history,
                            Statement::prepare(db_.get(),
                                               "INSERT OR REPLACE INTO schema_migrations "
                                               "(version, applied_at) VALUES (?1, ?2)"));
    history.bind(1, std::int64_t{v + 1}).bind(2, static_cast<std::int64_t>(std::time(nullptr)));
    TETHER_TRY(history.run());
    TETHER_TRY(tx.commit());
  }
  return {};
}

Result<std::optional<DeviceRecord>> SqliteStore::find_device(const std::string& id) {
  TETHER_ASSIGN_OR_RETURN(auto stmt,
                          Statement::prepare(db_.get(), std::string("SELECT ") + kDeviceColumns +
                                                            " FROM devices WHERE id = ?1"));
  stmt.bind(1, id);
  TETHER_ASSIGN_OR_RETURN(bool row, stmt.step());
  if (!row) return std::optional<DeviceRecord>{};
  return std::optional<DeviceRecord>(read_device(stmt));
}

Result<std::vector<DeviceRecord>> SqliteStore::list_devices() {
  TETHER_ASSIGN_OR_RETURN(
      auto stmt, Statement::prepare(db_.get(), std::string("SELECT ") + kDeviceColumns +
                                                   " FROM devices WHERE deleted = 0 ORDER BY id"));
  std::vector<DeviceRecord> out;
  while (true) {
    TETHER_ASSIGN_OR_RETURN(bool row, stmt.step());
    if (!row) break;
    out.push_back(read_device(stmt));
  }
  return out;
}

Result<EnrollOutcome> SqliteStore::redeem_token_and_enroll(const std::string& token_id,
                                                           std::int64_t now,
                                                           const EnrolledDevice& device) {
  TETHER_ASSIGN_OR_RETURN(auto tx, Transaction::begin(db_.get()));
  {
    TETHER_ASSIGN_OR_RETURN(
        auto use, Statement::prepare(db_.get(),
                                     "UPDATE enrollment_tokens SET used_at = ?1, used_by = ?2 "
                                     "WHERE id = ?3 AND used_at IS NULL AND expires_at > ?1"));
    use.bind(1, now).bind(2, device.id).bind(3, token_id);
    TETHER_TRY(use.run());
    if (sqlite3_changes(db_.get()) != 1) return EnrollOutcome::kTokenNotRedeemable;
  }
  {
    TETHER_ASSIGN_OR_RETURN(
        auto upsert,
        Statement::prepare(
            db_.get(),
            "INSERT INTO devices (id, hostname, macs, address, first_seen, last_seen, "
            "cert_serial, cert_expires, online_key) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8) "
            "ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, macs = excluded.macs, "
            "address = excluded.address, last_seen = excluded.last_seen, "
            "cert_serial = excluded.cert_serial, cert_expires = excluded.cert_expires "
            "WHERE devices.revoked = 0"));
    upsert.bind(1, device.id)
        .bind(2, cap(device.hostname, kMaxHostname))
        .bind(3, macs_to_json(device.macs))
        .bind(4, cap(device.address, kMaxAddress))
        .bind(5, now)
        .bind(6, device.cert_serial)
        .bind(7, device.cert_expires)
        .bind(8, device.new_online_key);
    TETHER_TRY(upsert.run());
    if (sqlite3_changes(db_.get()) != 1) return EnrollOutcome::kDeviceRevoked;
  }
  TETHER_TRY(tx.commit());
  return EnrollOutcome::kEnrolled;
}

Status SqliteStore::record_hello(const DeviceHelloRecord& hello) {
  TETHER_ASSIGN_OR_RETURN(
      auto stmt, Statement::prepare(db_.get(),
                                    "UPDATE devices SET hostname = ?1, agent_version = ?2, "
                                    "os = ?3, address = ?4, last_seen = max(last_seen, ?5) "
                                    "WHERE id = ?6"));
  stmt.bind(1, cap(hello.hostname, kMaxHostname))
      .bind(2, cap(hello.agent_version, kMaxVersion))
      .bind(3, cap(hello.os, kMaxOs))
      .bind(4, cap(hello.address, kMaxAddress))
      .bind(5, hello.seen_at)
      .bind(6, hello.id);
  return stmt.run();
}

Status SqliteStore::update_certificate(const std::string& id, const std::string& serial,
                                       std::int64_t expires) {
  TETHER_ASSIGN_OR_RETURN(auto stmt, Statement::prepare(db_.get(),
                                                        "UPDATE devices SET cert_serial = ?1, "
                                                        "cert_expires = ?2 WHERE id = ?3"));
  stmt.bind(1, cap(serial, 64)).bind(2, expires).bind(3, id);
  return stmt.run();
}

Status SqliteStore::update_inventory(const std::string& id, const std::string& inventory_json) {
  if (inventory_json.size() > kMaxJson) {
    return make_error(Errc::kTooLarge, "inventory too large to store");
  }
  TETHER_ASSIGN_OR_RETURN(
      auto stmt, Statement::prepare(db_.get(), "UPDATE devices SET inventory = ?1 WHERE id = ?2"));
  stmt.bind(1, inventory_json).bind(2, id);
  return stmt.run();
}

Status SqliteStore::update_settings(const std::string& id, const std::string& settings_json) {
  if (settings_json.size() > kMaxJson) {
    return make_error(Errc::kTooLarge, "settings document too large to store");
  }
  TETHER_ASSIGN_OR_RETURN(
      auto stmt,
      Statement::prepare(db_.get(),
                         "UPDATE devices SET settings = ?1, settings_error = NULL WHERE id = ?2"));
  stmt.bind(1, settings_json).bind(2, id);
  TETHER_TRY(stmt.run());
  if (sqlite3_changes(db_.get()) != 1) return make_error(Errc::kNotFound, "no device " + id);
  return {};
}

Status SqliteStore::set_settings_error(const std::string& id, const std::string& error) {
  TETHER_ASSIGN_OR_RETURN(auto stmt,
                          Statement::prepare(db_.get(),
                                             "UPDATE devices SET settings_error = nullif(?1, '') "
                                             "WHERE id = ?2"));
  stmt.bind(1, cap(error, kMaxSettingsError)).bind(2, id);
  TETHER_TRY(stmt.run());
  if (sqlite3_changes(db_.get()) != 1) return make_error(Errc::kNotFound, "no device " + id);
  return {};
}

Status SqliteStore::record_activity(const std::vector<DeviceActivity>& batch) {
  if (batch.empty()) return {};
  TETHER_ASSIGN_OR_RETURN(auto tx, Transaction::begin(db_.get()));
  TETHER_ASSIGN_OR_RETURN(
      auto stmt, Statement::prepare(db_.get(),
                                    "UPDATE devices SET last_seen = max(last_seen, ?1), "
                                    "address = coalesce(nullif(?2, ''), address), "
                                    "status = coalesce(nullif(?3, ''), status) WHERE id = ?4"));
  for (const auto& a : batch) {
    stmt.reset();
    stmt.bind(1, a.last_seen)
        .bind(2, cap(a.address, kMaxAddress))
        .bind(3, a.status_json.size() > kMaxJson ? std::string() : a.status_json)
        .bind(4, a.id);
    TETHER_TRY(stmt.run());
  }
  return tx.commit();
}

Result<bool> SqliteStore::revoke_device(const std::string& id, bool also_delete) {
  TETHER_ASSIGN_OR_RETURN(
      auto stmt,
      Statement::prepare(db_.get(),
                         "UPDATE devices SET revoked = 1, "
                         "deleted = CASE WHEN ?1 THEN 1 ELSE deleted END WHERE id = ?2"));
  stmt.bind(1, std::int64_t{also_delete ? 1 : 0}).bind(2, id);
  TETHER_TRY(stmt.run());
  return sqlite3_changes(db_.get()) == 1;
}

Status SqliteStore::insert_enrollment_token(const EnrollmentTokenRecord& token) {
  TETHER_ASSIGN_OR_RETURN(auto stmt,
                          Statement::prepare(db_.get(),
                                             "INSERT INTO enrollment_tokens (id, secret_sha256, "
                                             "created_at, expires_at, mac, server_url) "
                                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
  stmt.bind(1, token.id)
      .bind(2, token.secret_sha256)
      .bind(3, token.created_at)
      .bind(4, token.expires_at);
  if (token.mac.empty()) {
    stmt.bind_null(5);
  } else {
    stmt.bind(5, token.mac);
  }
  if (token.server_url.empty()) {
    stmt.bind_null(6);
  } else {
    stmt.bind(6, cap(token.server_url, 512));
  }
  return stmt.run();
}

Result<std::optional<EnrollmentTokenRecord>> SqliteStore::find_enrollment_token(
    const std::string& secret_sha256) {
  TETHER_ASSIGN_OR_RETURN(
      auto stmt, Statement::prepare(db_.get(),
                                    "SELECT id, secret_sha256, created_at, expires_at, used_at, "
                                    "used_by, mac, server_url FROM enrollment_tokens "
                                    "WHERE secret_sha256 = ?1"));
  stmt.bind(1, secret_sha256);
  TETHER_ASSIGN_OR_RETURN(bool row, stmt.step());
  if (!row) return std::optional<EnrollmentTokenRecord>{};
  EnrollmentTokenRecord t;
  t.id = stmt.text(0);
  t.secret_sha256 = stmt.text(1);
  t.created_at = stmt.integer(2);
  t.expires_at = stmt.integer(3);
  if (!stmt.is_null(4)) t.used_at = stmt.integer(4);
  t.used_by = stmt.text(5);
  t.mac = stmt.text(6);
  t.server_url = stmt.text(7);
  return std::optional<EnrollmentTokenRecord>(std::move(t));
}

Result<int> SqliteStore::purge_enrollment_tokens(std::int64_t before) {
  TETHER_ASSIGN_OR_RETURN(
      auto stmt,
      Statement::prepare(db_.get(), "DELETE FROM enrollment_tokens WHERE expires_at < ?1"));
  stmt.bind(1, before);
  TETHER_TRY(stmt.run());
  return sqlite3_changes(db_.get());
}

Result<bool> SqliteStore::insert_user(const UserRecord& user) {
  TETHER_ASSIGN_OR_RETURN(auto stmt,
                          Statement::prepare(db_.get(),
                                             "INSERT INTO users (name, password_hash, created_at) "
                                             "VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING"));
  stmt.bind(1, user.name).bind(2, user.password_hash).bind(3, user.created_at);
  TETHER_TRY(stmt.run());
  return sqlite3_changes(db_.get()) == 1;
}

Result<std::optional<UserRecord>> SqliteStore::find_user(const std::string& name) {
  TETHER_ASSIGN_OR_RETURN(auto stmt,
                          Statement::prepare(db_.get(),
                                             "SELECT name, password_hash, created_at FROM users "
                                             "WHERE name = ?1"));
  stmt.bind(1, name);
  TETHER_ASSIGN_OR_RETURN(bool row, stmt.step());
  if (!row) return std::optional<UserRecord>{};
  return std::optional<UserRecord>(UserRecord{stmt.text(0), stmt.text(1), stmt.integer(2)});
}

Result<std::vector<UserRecord>> SqliteStore::list_users() {
  TETHER_ASSIGN_OR_RETURN(auto stmt,
                          Statement::prepare(db_.get(),
                                             "SELECT name, password_hash, created_at FROM users "
                                             "ORDER BY name"));
  std::vector<UserRecord> out;
  while (true) {
    TETHER_ASSIGN_OR_RETURN(bool row, stmt.step());
    if (!row) break;
    out.push_back(UserRecord{stmt.text(0), stmt.text(1), stmt.integer(2)});
  }
  return out;
}

Result<bool> SqliteStore::delete_user(const std::string& name) {
  TETHER_ASSIGN_OR_RETURN(auto stmt,
                          Statement::prepare(db_.get(), "DELETE FROM users WHERE name = ?1"));
  stmt.bind(1, name);
  TETHER_TRY(stmt.run());
  return sqlite3_changes(db_.get()) == 1;
}

// ---- shadowing audit -----------------------------------------------------------------

Status SqliteStore::save_shadow_audit(const ShadowAuditRecord& r) {
  TETHER_ASSIGN_OR_RETURN(
      auto stmt,
      Statement::prepare(
          db_.get(),
          "INSERT INTO shadow_audit (session_id, device_id, hostname, admin, viewer, view_only, "
          "requested_at, started_at, ended_at, bytes_to_viewer, bytes_to_device, end_reason, "
          "end_message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) "
          "ON CONFLICT (session_id) DO UPDATE SET device_id = ?2, hostname = ?3, admin = ?4, "
          "viewer = ?5, view_only = ?6, requested_at = ?7, started_at = ?8, ended_at = ?9, "
          "bytes_to_viewer = ?10, bytes_to_device = ?11, end_reason = ?12, end_message = ?13"));
  stmt.bind(1, cap(r.session_id, 64))
      .bind(2, cap(r.device_id, 64))
      .bind(3, cap(r.hostname, kMaxHostname))
      .bind(4, cap(r.admin, 128))
      .bind(5, cap(r.viewer, 16))
      .bind(6, std::int64_t{r.view_only ? 1 : 0})
      .bind(7, r.requested_at);
  if (r.started_at) {
    stmt.bind(8, *r.started_at);
  } else {
    stmt.bind_null(8);
  }
  if (r.ended_at) {
    stmt.bind(9, *r.ended_at);
  } else {
    stmt.bind_null(9);
  }
  stmt.bind(10, r.bytes_to_viewer).bind(11, r.bytes_to_device);
  if (r.end_reason.empty()) {
    stmt.bind_null(12);
  } else {
    stmt.bind(12, cap(r.end_reason, 64));
  }
  if (r.end_message.empty()) {
    stmt.bind_null(13);
  } else {
    stmt.bind(13, cap(r.end_message, 1024));
  }
  return stmt.run();
}

Result<std::vector<ShadowAuditRecord>> SqliteStore::list_shadow_audit(const std::string& device_id,
                                                                      int limit) {
  TETHER_ASSIGN_OR_RETURN(
      auto stmt,
      Statement::prepare(db_.get(),
                         "SELECT session_id, device_id, hostname, admin, viewer, view_only, "
                         "requested_at, started_at, ended_at, bytes_to_viewer, bytes_to_device, "
                         "end_reason, end_message FROM shadow_audit "
                         "WHERE ?1 = '' OR device_id = ?1 "
                         "ORDER BY requested_at DESC, rowid DESC LIMIT ?2"));
  stmt.bind(1, device_id).bind(2, std::int64_t{limit});
  std::vector<ShadowAuditRecord> out;
  while (true) {
    TETHER_ASSIGN_OR_RETURN(bool row, stmt.step());
    if (!row) break;
    ShadowAuditRecord r;
    r.session_id = stmt.text(0);
    r.device_id = stmt.text(1);
    r.hostname = stmt.text(2);
    r.admin = stmt.text(3);
    r.viewer = stmt.text(4);
    r.view_only = stmt.integer(5) != 0;
    r.requested_at = stmt.integer(6);
    if (!stmt.is_null(7)) r.started_at = stmt.integer(7);
    if (!stmt.is_null(8)) r.ended_at = stmt.integer(8);
    r.bytes_to_viewer = stmt.integer(9);
    r.bytes_to_device = stmt.integer(10);
    r.end_reason = stmt.text(11);
    r.end_message = stmt.text(12);
    out.push_back(std::move(r));
  }
  return out;
}

// ---- gateways ---------------------------------------------------------------------------

namespace {

constexpr const char* kGatewayColumns =
    "name, url, join_secret_sha256, join_expires_at, joined_at, cert_fingerprint, created_at";

GatewayRecord read_gateway(const Statement& s) {
  GatewayRecord g;
  g.name = s.text(0);
  g.url = s.text(1);
  g.join_secret_sha256 = s.text(2);
  g.join_expires_at = s.integer(3);
  g.joined_at = s.integer(4);
  g.cert_fingerprint = s.text(5);
  g.created_at = s.integer(6);
  return g;
}

}  // namespace

Result<bool> SqliteStore::insert_gateway(const GatewayRecord& g) {
  TETHER_ASSIGN_OR_RETURN(
      auto stmt,
      Statement::prepare(db_.get(), std::string("INSERT INTO gateways (") + kGatewayColumns +
                                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                                        "ON CONFLICT (name) DO NOTHING"));
  stmt.bind(1, cap(g.name, 64))
      .bind(2, cap(g.url, 512))
      .bind(3, cap(g.join_secret_sha256, 64))
      .bind(4, g.join_expires_at)
      .bind(5, g.joined_at)
      .bind(6, cap(g.cert_fingerprint, 64))
      .bind(7, g.created_at);
  TETHER_TRY(stmt.run());
  return sqlite3_changes(db_.get()) == 1;
}

Result<std::optional<GatewayRecord>> SqliteStore::find_gateway(const std::string& name) {
  TETHER_ASSIGN_OR_RETURN(auto stmt,
                          Statement::prepare(db_.get(), std::string("SELECT ") + kGatewayColumns +
                                                            " FROM gateways WHERE name = ?1"));
  stmt.bind(1, name);
  TETHER_ASSIGN_OR_RETURN(bool row, stmt.step());
  if (!row) return std::optional<GatewayRecord>{};
  return std::optional<GatewayRecord>(read_gateway(stmt));
}

Result<std::vector<GatewayRecord>> SqliteStore::list_gateways() {
  TETHER_ASSIGN_OR_RETURN(auto stmt,
                          Statement::prepare(db_.get(), std::string("SELECT ") + kGatewayColumns +
                                                            " FROM gateways ORDER BY name"));
  std::vector<GatewayRecord> out;
  while (true) {
    TETHER_ASSIGN_OR_RETURN(bool row, stmt.step());
    if (!row) break;
    out.push_back(read_gateway(stmt));
  }
  return out;
}

Result<bool> SqliteStore::remove_gateway(const std::string& name) {
  TETHER_ASSIGN_OR_RETURN(auto stmt,
                          Statement::prepare(db_.get(), "DELETE FROM gateways WHERE name = ?1"));
  stmt.bind(1, name);
  TETHER_TRY(stmt.run());
  return sqlite3_changes(db_.get()) == 1;
}

Result<bool> SqliteStore::mark_gateway_joined(const std::string& name,
                                              const std::string& secret_sha256, std::int64_t now,
                                              const std::string& cert_fingerprint) {
  if (secret_sha256.empty()) return false;
  TETHER_ASSIGN_OR_RETURN(
      auto stmt, Statement::prepare(db_.get(),
                                    "UPDATE gateways SET joined_at = ?3, cert_fingerprint = ?4, "
                                    "join_secret_sha256 = '' WHERE name = ?1 AND joined_at = 0 AND "
                                    "join_secret_sha256 = ?2 AND join_expires_at > ?3"));
  stmt.bind(1, name).bind(2, secret_sha256).bind(3, now).bind(4, cap(cert_fingerprint, 64));
  TETHER_TRY(stmt.run());
  return sqlite3_changes(db_.get()) == 1;
}

// ---- web API sessions ------------------------------------------------------------------

Status SqliteStore::insert_api_session(const ApiSessionRecord& session, std::int64_t now,
                                       std::size_t max_sessions) {
  TETHER_ASSIGN_OR_RETURN(auto tx, Transaction::begin(db_.get()));
  {
    TETHER_ASSIGN_OR_RETURN(
        auto expired,
        Statement::prepare(db_.get(), "DELETE FROM api_sessions WHERE expires_at <= ?1"));
    expired.bind(1, now);
    TETHER_TRY(expired.run());
  }
  {
    // Full: the sessions closest to their end go first (rowid: the older among equals).
    TETHER_ASSIGN_OR_RETURN(
        auto excess,
        Statement::prepare(db_.get(),
                           "DELETE FROM api_sessions WHERE rowid IN (SELECT rowid FROM "
                           "api_sessions ORDER BY expires_at, rowid LIMIT max(0, "
                           "(SELECT count(*) FROM api_sessions) - ?1 + 1))"));
    excess.bind(1, static_cast<std::int64_t>(max_sessions));
    TETHER_TRY(excess.run());
  }
  {
    TETHER_ASSIGN_OR_RETURN(auto insert,
                            Statement::prepare(db_.get(),
                                               "INSERT OR REPLACE INTO api_sessions (token_sha256, "
                                               "principal, admin, created_at, expires_at) "
                                               "VALUES (?1, ?2, ?3, ?4, ?5)"));
    insert.bind(1, cap(session.token_sha256, 64))
        .bind(2, cap(session.principal, 128))
        .bind(3, std::int64_t{session.admin ? 1 : 0})
        .bind(4, session.created_at)
        .bind(5, session.expires_at);
    TETHER_TRY(insert.run());
  }
  return tx.commit();
}

Result<std::optional<ApiSessionRecord>> SqliteStore::find_api_session(
    const std::string& token_sha256, std::int64_t now) {
  TETHER_ASSIGN_OR_RETURN(auto stmt,
                          Statement::prepare(db_.get(),
                                             "SELECT token_sha256, principal, admin, created_at, "
                                             "expires_at FROM api_sessions WHERE token_sha256 = ?1 "
                                             "AND expires_at > ?2"));
  stmt.bind(1, token_sha256).bind(2, now);
  TETHER_ASSIGN_OR_RETURN(bool row, stmt.step());
  if (!row) return std::optional<ApiSessionRecord>{};
  return std::optional<ApiSessionRecord>(ApiSessionRecord{
      stmt.text(0), stmt.text(1), stmt.integer(2) != 0, stmt.integer(3), stmt.integer(4)});
}

Result<bool> SqliteStore::delete_api_session(const std::string& token_sha256) {
  TETHER_ASSIGN_OR_RETURN(
      auto stmt, Statement::prepare(db_.get(), "DELETE FROM api_sessions WHERE token_sha256 = ?1"));
  stmt.bind(1, token_sha256);
  TETHER_TRY(stmt.run());
  return sqlite3_changes(db_.get()) == 1;
}

Result<int> SqliteStore::delete_api_sessions_of(const std::string& principal) {
  TETHER_ASSIGN_OR_RETURN(
      auto stmt,
      Statement::prepare(db_.get(), "DELETE FROM api_sessions WHERE principal = ?1 AND admin = 0"));
  stmt.bind(1, principal);
  TETHER_TRY(stmt.run());
  return sqlite3_changes(db_.get());
}

Result<int> SqliteStore::purge_api_sessions(std::int64_t now) {
  TETHER_ASSIGN_OR_RETURN(
      auto stmt, Statement::prepare(db_.get(), "DELETE FROM api_sessions WHERE expires_at <= ?1"));
  stmt.bind(1, now);
  TETHER_TRY(stmt.run());
  return sqlite3_changes(db_.get());
}

Result<std::int64_t> SqliteStore::count_api_sessions(std::int64_t now) {
  TETHER_ASSIGN_OR_RETURN(
      auto stmt,
      Statement::prepare(db_.get(), "SELECT count(*) FROM api_sessions WHERE expires_at > ?1"));
  stmt.bind(1, now);
  TETHER_ASSIGN_OR_RETURN(bool row, stmt.step());
  return row ? stmt.integer(0) : std::int64_t{0};
}

}  // namespace tether::server
