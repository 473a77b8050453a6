#include "server/PostgresStore.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <ctime>
#include <utility>

#include <nlohmann/json.hpp>

namespace tether::server {
namespace {

// Each entry moves the schema from version i to i + 1, in its own transaction, recorded in
// schema_migrations. Never edit a released entry: add a new one. Version 1 is the whole schema
// of SqliteStore's version 6 (this backend started there); BIGINT for every time and counter,
// BOOLEAN for flags, TEXT for JSON (stored as the server wrote it). `seq` columns order rows
// inserted in the same second, as rowid does in SQLite.
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
  first_seen BIGINT NOT NULL,
  last_seen BIGINT NOT NULL,
  cert_serial TEXT NOT NULL DEFAULT '',
  cert_expires BIGINT NOT NULL DEFAULT 0,
  revoked BOOLEAN NOT NULL DEFAULT false,
  deleted BOOLEAN NOT NULL DEFAULT false,
  online_key TEXT NOT NULL,
  inventory TEXT,
  status TEXT,
  settings TEXT,
  settings_error TEXT
);
CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  secret_sha256 TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  used_at BIGINT,
  used_by TEXT,
  mac TEXT,
  server_url TEXT
);
CREATE INDEX enrollment_tokens_expiry ON enrollment_tokens (expires_at);
CREATE TABLE users (
  name TEXT PRIMARY KEY,
  password_hash TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE TABLE shadow_audit (
  session_id TEXT PRIMARY KEY,
  seq BIGINT GENERATED ALWAYS AS IDENTITY,
  device_id TEXT NOT NULL,
  hostname TEXT NOT NULL DEFAULT '',
  admin TEXT NOT NULL DEFAULT '',
  viewer TEXT NOT NULL DEFAULT '',
  view_only BOOLEAN NOT NULL DEFAULT false,
  requested_at BIGINT NOT NULL,
  started_at BIGINT,
  ended_at BIGINT,
  bytes_to_viewer BIGINT NOT NULL DEFAULT 0,
  bytes_to_device BIGINT NOT NULL DEFAULT 0,
  end_reason TEXT,
  end_message TEXT
);
CREATE INDEX shadow_audit_device ON shadow_audit (device_id, requested_at);
CREATE INDEX shadow_audit_requested ON shadow_audit (requested_at);
CREATE TABLE gateways (
  name TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  join_secret_sha256 TEXT NOT NULL DEFAULT '',
  join_expires_at BIGINT NOT NULL DEFAULT 0,
  joined_at BIGINT NOT NULL DEFAULT 0,
  cert_fingerprint TEXT NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL
);
CREATE TABLE api_sessions (
  token_sha256 TEXT PRIMARY KEY,
  seq BIGINT GENERATED ALWAYS AS IDENTITY,
  principal TEXT NOT NULL,
  admin BOOLEAN NOT NULL DEFAULT false,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX api_sessions_expiry ON api_sessions (expires_at);
CREATE INDEX api_sessions_principal ON api_sessions (principal);
)sql",
};

// The transaction-level advisory lock that serialises the session cap across instances.
constexpr const char* kSessionLockKey = "8387236432366370818";  // 0x7465746865720002

// The same caps as SqliteStore's (agent-supplied strings are bounded by the protocol decoders
// already; these keep the database bounded even if a caller forgets).
constexpr std::size_t kMaxHostname = 253;
constexpr std::size_t kMaxVersion = 64;
constexpr std::size_t kMaxOs = 512;
constexpr std::size_t kMaxAddress = 64;
constexpr std::size_t kMaxMacs = 64;
constexpr std::size_t kMaxJson = 512 * 1024;
constexpr std::size_t kMaxSettingsError = 4096;

// A text parameter: PostgreSQL text cannot hold NUL (libpq would cut the value there), so NULs
// are dropped; then capped at `max` bytes without cutting a UTF-8 sequence in half.
std::string text(std::string_view value, std::size_t max = std::string::npos) {
  std::string out;
  out.reserve(std::min(value.size(), max));
  for (char c : value) {
    if (c != '\0') out.push_back(c);
  }
  if (out.size() <= max) return out;
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(out[end]) & 0xC0) == 0x80) --end;
  out.resize(end);
  return out;
}

std::string number(std::int64_t value) {
  return std::to_string(value);
}

const char* flag(bool value) {
  return value ? "true" : "false";
}

std::optional<std::string> text_or_null(std::string_view value, std::size_t max) {
  if (value.empty()) return std::nullopt;
  return text(value, max);
}

std::optional<std::string> number_or_null(const std::optional<std::int64_t>& value) {
  if (!value) return std::nullopt;
  return number(*value);
}

std::string trimmed(const char* message) {
  std::string out = message != nullptr ? message : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out.empty() ? "unknown error" : out;
}

// One row of a result, columns read by index.
class Row {
 public:
  Row(const PGresult* result, int row) : result_(result), row_(row) {}
  [[nodiscard]] std::string text(int col) const {
    if (is_null(col)) return {};
    return std::string(PQgetvalue(result_, row_, col),
                       static_cast<std::size_t>(PQgetlength(result_, row_, col)));
  }
  [[nodiscard]] std::int64_t integer(int col) const {
    if (is_null(col)) return 0;
    return std::strtoll(PQgetvalue(result_, row_, col), nullptr, 10);
  }
  [[nodiscard]] bool boolean(int col) const {
    return !is_null(col) && PQgetvalue(result_, row_, col)[0] == 't';
  }
  [[nodiscard]] bool is_null(int col) const { return PQgetisnull(result_, row_, col) != 0; }

 private:
  const PGresult* result_;
  int row_;
};

constexpr const char* kDeviceColumns =
    "id, name, hostname, agent_version, os, macs, address, first_seen, last_seen, cert_serial, "
    "cert_expires, revoked, deleted, online_key, inventory, status, settings, settings_error";

std::string macs_to_json(const std::vector<std::string>& macs) {
  nlohmann::json arr = nlohmann::json::array();
  for (std::size_t i = 0; i < macs.size() && i < kMaxMacs; ++i) arr.push_back(text(macs[i], 17));
  return arr.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<std::string> macs_from_json(const std::string& json_text) {
  std::vector<std::string> out;
  const auto doc = nlohmann::json::parse(json_text, nullptr, false);
  if (!doc.is_array()) return out;
  for (const auto& item : doc) {
    if (item.is_string()) out.push_back(item.get<std::string>());
  }
  return out;
}

DeviceRecord read_device(const Row& r) {
  DeviceRecord d;
  d.id = r.text(0);
  d.name = r.text(1);
  d.hostname = r.text(2);
  d.agent_version = r.text(3);
  d.os = r.text(4);
  d.macs = macs_from_json(r.text(5));
  d.address = r.text(6);
  d.first_seen = r.integer(7);
  d.last_seen = r.integer(8);
  d.cert_serial = r.text(9);
  d.cert_expires = r.integer(10);
  d.revoked = r.boolean(11);
  d.deleted = r.boolean(12);
  d.online_key = r.text(13);
  d.inventory_json = r.text(14);
  d.status_json = r.text(15);
  if (!r.is_null(16)) d.settings_json = r.text(16);
  d.settings_error = r.text(17);
  return d;
}

constexpr const char* kGatewayColumns =
    "name, url, join_secret_sha256, join_expires_at, joined_at, cert_fingerprint, created_at";

GatewayRecord read_gateway(const Row& r) {
  GatewayRecord g;
  g.name = r.text(0);
  g.url = r.text(1);
  g.join_secret_sha256 = r.text(2);
  g.join_expires_at = r.integer(3);
  g.joined_at = r.integer(4);
  g.cert_fingerprint = r.text(5);
  g.created_at = r.integer(6);
  return g;
}

void ignore_notice(void* /*arg*/, const char* /*message*/) {}

}  // namespace

// BEGIN ... COMMIT on the store's connection; rolled back when not committed. PostgreSQL's
// row locks make the second of two racing UPDATEs of the same row wait for the first and then
// re-check its WHERE clause (READ COMMITTED), which is what "only one redemption wins" needs.
class PostgresStore::Transaction {
 public:
  static Result<Transaction> begin(PostgresStore& store) {
    TETHER_TRY(store.exec_script("BEGIN"));
    store.in_transaction_ = true;
    return Transaction(store);
  }
  Transaction(Transaction&& other) noexcept : store_(std::exchange(other.store_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction() {
    if (store_ == nullptr) return;
    (void)store_->exec_script("ROLLBACK");
    store_->in_transaction_ = false;
  }
  Status commit() {
    PostgresStore* store = std::exchange(store_, nullptr);
    auto committed = store->exec_script("COMMIT");
    if (!committed.ok()) (void)store->exec_script("ROLLBACK");
    store->in_transaction_ = false;
    return committed;
  }

 private:
  explicit Transaction(PostgresStore& store) : store_(&store) {}
  PostgresStore* store_;
};

PostgresStore::PostgresStore(ConnPtr conn, std::string description)
    : conn_(std::move(conn)), description_(std::move(description)) {}
PostgresStore::~PostgresStore() = default;

int PostgresStore::latest_schema_version() {
  return static_cast<int>(std::size(kMigrations));
}

int PostgresStore::backend_pid() const noexcept {
  return PQbackendPID(conn_.get());
}

std::string PostgresStore::describe_url(const std::string& url) {
  char* message = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &message);
  if (message != nullptr) PQfreemem(message);
  if (options == nullptr) return "postgresql://(unparseable store.url)";
  std::string user;
  std::string host;
  std::string port;
  std::string dbname;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const std::string_view key = o->keyword;
    if (key == "user") user = o->val;
    if (key == "host") host = o->val;
    if (key == "hostaddr" && host.empty()) host = o->val;
    if (key == "port") port = o->val;
    if (key == "dbname") dbname = o->val;
  }
  PQconninfoFree(options);
  std::string out = "postgresql://";
  if (!user.empty()) out += user + "@";
  out += host.empty() ? "localhost" : host;
  if (!port.empty()) out += ":" + port;
  out += "/" + dbname;
  return out;
}

Result<std::unique_ptr<PostgresStore>> PostgresStore::open(const std::string& url) {
  const std::string description = describe_url(url);
  // Defaults first: the URL's own parameters (expanded from dbname) override them.
  const char* const keywords[] = {"connect_timeout", "application_name", "client_encoding",
                                  "dbname", nullptr};
  const char* const values[] = {"10", "tether-server", "UTF8", url.c_str(), nullptr};
  ConnPtr conn(PQconnectdbParams(keywords, values, 1));
  if (!conn) return make_error(Errc::kIo, "cannot connect to database " + description);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return make_error(Errc::kUnavailable, "cannot connect to database " + description + ": " +
                                              trimmed(PQerrorMessage(conn.get())));
  }
  // "relation already exists, skipping" and the like are not for the server's stderr.
  PQsetNoticeProcessor(conn.get(), ignore_notice, nullptr);
  std::unique_ptr<PostgresStore> store(new PostgresStore(std::move(conn), description));
  TETHER_TRY(store->migrate());
  return store;
}

Error PostgresStore::error_of(pg_result* result, std::string_view what) const {
  std::string detail;
  Errc code = Errc::kIo;
  if (PQstatus(conn_.get()) != CONNECTION_OK) {
    code = Errc::kUnavailable;
    detail = trimmed(PQerrorMessage(conn_.get()));
  } else if (result != nullptr) {
    const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    detail = trimmed(primary != nullptr ? primary : PQresultErrorMessage(result));
    const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    const std::string_view sqlstate = state != nullptr ? state : "";
    // Serialisation failure, deadlock, lock timeout, cancelled: worth retrying later.
    if (sqlstate == "40001" || sqlstate == "40P01" || sqlstate == "55P03" || sqlstate == "57014") {
      code = Errc::kUnavailable;
    }
  } else {
    detail = trimmed(PQerrorMessage(conn_.get()));
  }
  return make_error(code, "database " + description_ + ": " + std::string(what) + ": " + detail);
}

Result<PostgresStore::ResultPtr> PostgresStore::run_once(std::string_view sql,
                                                         const std::vector<Param>* params) {
  const std::string statement(sql);
  ResultPtr result;
  if (params == nullptr) {
    result.reset(PQexec(conn_.get(), statement.c_str()));
  } else {
    std::vector<const char*> values;
    values.reserve(params->size());
    for (const auto& p : *params) values.push_back(p ? p->c_str() : nullptr);
    result.reset(PQexecParams(conn_.get(), statement.c_str(), static_cast<int>(values.size()),
                              nullptr, values.data(), nullptr, nullptr, 0));
  }
  const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return error_of(result.get(), "statement failed");
  }
  return result;
}

Result<PostgresStore::ResultPtr> PostgresStore::query(std::string_view sql,
                                                      const std::vector<Param>& params) {
  auto result = run_once(sql, &params);
  if (result.ok() || in_transaction_ || PQstatus(conn_.get()) == CONNECTION_OK) return result;
  // The connection was lost (the database restarted, a proxy dropped it): reconnect once and
  // run the statement again. Inside a transaction that would run its tail alone, so not there.
  PQreset(conn_.get());
  if (PQstatus(conn_.get()) != CONNECTION_OK) {
    return make_error(Errc::kUnavailable, "database " + description_ +
                                              ": connection lost and cannot reconnect: " +
                                              trimmed(PQerrorMessage(conn_.get())));
  }
  return run_once(sql, &params);
}

Result<int> PostgresStore::change(std::string_view sql, const std::vector<Param>& params) {
  TETHER_ASSIGN_OR_RETURN(auto result, query(sql, params));
  return std::atoi(PQcmdTuples(result.get()));
}

Status PostgresStore::exec_script(std::string_view sql) {
  auto result = run_once(sql, nullptr);
  if (!result.ok() && !in_transaction_ && PQstatus(conn_.get()) != CONNECTION_OK) {
    PQreset(conn_.get());
    if (PQstatus(conn_.get()) == CONNECTION_OK) result = run_once(sql, nullptr);
  }
  if (!result.ok()) return result.error();
  return {};
}

Result<int> PostgresStore::schema_version() {
  TETHER_ASSIGN_OR_RETURN(auto result,
                          query("SELECT coalesce(max(version), 0) FROM schema_migrations"));
  return static_cast<int>(Row(result.get(), 0).integer(0));
}

Status PostgresStore::migrate() {
  // Session-level: held across the migrations' own transactions, released below or when the
  // connection ends. Instances starting at once wait here; the second finds the work done.
  TETHER_TRY(query("SELECT pg_advisory_lock($1::bigint)", {number(kMigrationLockKey)}));
  struct Unlock {
    PostgresStore* store;
    ~Unlock() {
      (void)store->query("SELECT pg_advisory_unlock($1::bigint)", {number(kMigrationLockKey)});
    }
  } unlock{this};
  TETHER_TRY(
      exec_script("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                  "applied_at BIGINT NOT NULL)"));
  TETHER_ASSIGN_OR_RETURN(int version, schema_version());
  const int latest = latest_schema_version();
  if (version > latest) {
    return make_error(Errc::kConflict, "database " + description_ + " has schema version " +
                                           std::to_string(version) + ", newer than this server's " +
                                           std::to_string(latest) + "; upgrade tether-server");
  }
  for (int v = version; v < latest; ++v) {
    TETHER_ASSIGN_OR_RETURN(auto tx, Transaction::begin(*this));
    auto applied = exec_script(kMigrations[v]);
    if (!applied.ok()) {
      return applied.error().context("migration to version " + std::to_string(v + 1));
    }
    TETHER_TRY(query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                     {number(v + 1), number(static_cast<std::int64_t>(std::time(nullptr)))}));
    TETHER_TRY(tx.commit());
  }
  return {};
}

// ---- devices ----------------------------------------------------------------------------

Result<std::optional<DeviceRecord>> PostgresStore::find_device(const std::string& id) {
  TETHER_ASSIGN_OR_RETURN(
      auto r,
      query(std::string("SELECT ") + kDeviceColumns + " FROM devices WHERE id = $1", {text(id)}));
  if (PQntuples(r.get()) == 0) return std::optional<DeviceRecord>{};
  return std::optional<DeviceRecord>(read_device(Row(r.get(), 0)));
}

Result<std::vector<DeviceRecord>> PostgresStore::list_devices() {
  TETHER_ASSIGN_OR_RETURN(auto r,
                          query(std::string("SELECT ") + kDeviceColumns +
                                " FROM devices WHERE NOT deleted ORDER BY id COLLATE \"C\""));
  std::vector<DeviceRecord> out;
  const int rows = PQntuples(r.get());
  out.reserve(static_cast<std::size_t>(rows));
  for (int i = 0; i < rows; ++i) out.push_back(read_device(Row(r.get(), i)));
  return out;
}

Result<EnrollOutcome> PostgresStore::redeem_token_and_enroll(const std::string& token_id,
                                                             std::int64_t now,
                                                             const EnrolledDevice& device) {
  TETHER_ASSIGN_OR_RETURN(auto tx, Transaction::begin(*this));
  // Of two connections redeeming the same token, the second waits on the row lock here and
  // then finds used_at set: only one redemption wins.
  TETHER_ASSIGN_OR_RETURN(int used, change("UPDATE enrollment_tokens SET used_at = $1, "
                                           "used_by = $2 WHERE id = $3 AND used_at IS NULL "
                                           "AND expires_at > $1",
                                           {number(now), text(device.id), text(token_id)}));
  if (used != 1) return EnrollOutcome::kTokenNotRedeemable;
  TETHER_ASSIGN_OR_RETURN(
      int upserted,
      change("INSERT INTO devices (id, hostname, macs, address, first_seen, last_seen, "
             "cert_serial, cert_expires, online_key) VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8) "
             "ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, macs = excluded.macs, "
             "address = excluded.address, last_seen = excluded.last_seen, "
             "cert_serial = excluded.cert_serial, cert_expires = excluded.cert_expires "
             "WHERE NOT devices.revoked",
             {text(device.id), text(device.hostname, kMaxHostname), macs_to_json(device.macs),
              text(device.address, kMaxAddress), number(now), text(device.cert_serial),
              number(device.cert_expires), text(device.new_online_key)}));
  if (upserted != 1) return EnrollOutcome::kDeviceRevoked;
  TETHER_TRY(tx.commit());
  return EnrollOutcome::kEnrolled;
}

Status PostgresStore::execute(std::string_view sql, const std::vector<Param>& params) {
  TETHER_TRY(query(sql, params));
  return {};
}

Status PostgresStore::record_hello(const DeviceHelloRecord& hello) {
  return execute(
      "UPDATE devices SET hostname = $1, agent_version = $2, os = $3, address = $4, "
      "last_seen = greatest(last_seen, $5) WHERE id = $6",
      {text(hello.hostname, kMaxHostname), text(hello.agent_version, kMaxVersion),
       text(hello.os, kMaxOs), text(hello.address, kMaxAddress), number(hello.seen_at),
       text(hello.id)});
}

Status PostgresStore::update_certificate(const std::string& id, const std::string& serial,
                                         std::int64_t expires) {
  return execute("UPDATE devices SET cert_serial = $1, cert_expires = $2 WHERE id = $3",
                 {text(serial, 64), number(expires), text(id)});
}

Status PostgresStore::update_inventory(const std::string& id, const std::string& inventory_json) {
  if (inventory_json.size() > kMaxJson) {
    return make_error(Errc::kTooLarge, "inventory too large to store");
  }
  return execute("UPDATE devices SET inventory = $1 WHERE id = $2",
                 {text(inventory_json), text(id)});
}

Status PostgresStore::update_settings(const std::string& id, const std::string& settings_json) {
  if (settings_json.size() > kMaxJson) {
    return make_error(Errc::kTooLarge, "settings document too large to store");
  }
  TETHER_ASSIGN_OR_RETURN(
      int changed, change("UPDATE devices SET settings = $1, settings_error = NULL WHERE id = $2",
                          {text(settings_json), text(id)}));
  if (changed != 1) return make_error(Errc::kNotFound, "no device " + id);
  return {};
}

Status PostgresStore::set_settings_error(const std::string& id, const std::string& error) {
  TETHER_ASSIGN_OR_RETURN(int changed,
                          change("UPDATE devices SET settings_error = nullif($1, '') WHERE id = $2",
                                 {text(error, kMaxSettingsError), text(id)}));
  if (changed != 1) return make_error(Errc::kNotFound, "no device " + id);
  return {};
}

Status PostgresStore::record_activity(const std::vector<DeviceActivity>& batch) {
  if (batch.empty()) return {};
  TETHER_ASSIGN_OR_RETURN(auto tx, Transaction::begin(*this));
  for (const auto& a : batch) {
    TETHER_TRY(execute(
        "UPDATE devices SET last_seen = greatest(last_seen, $1), "
        "address = coalesce(nullif($2, ''), address), "
        "status = coalesce(nullif($3, ''), status) WHERE id = $4",
        {number(a.last_seen), text(a.address, kMaxAddress),
         a.status_json.size() > kMaxJson ? std::string() : text(a.status_json), text(a.id)}));
  }
  return tx.commit();
}

Result<bool> PostgresStore::revoke_device(const std::string& id, bool also_delete) {
  TETHER_ASSIGN_OR_RETURN(int changed,
                          change("UPDATE devices SET revoked = true, deleted = deleted OR $1 "
                                 "WHERE id = $2",
                                 {flag(also_delete), text(id)}));
  return changed == 1;
}

// ---- enrollment tokens ------------------------------------------------------------------

Status PostgresStore::insert_enrollment_token(const EnrollmentTokenRecord& token) {
  return execute(
      "INSERT INTO enrollment_tokens (id, secret_sha256, created_at, expires_at, mac, "
      "server_url) VALUES ($1, $2, $3, $4, $5, $6)",
      {text(token.id), text(token.secret_sha256), number(token.created_at),
       number(token.expires_at), text_or_null(token.mac, 64), text_or_null(token.server_url, 512)});
}

Result<std::optional<EnrollmentTokenRecord>> PostgresStore::find_enrollment_token(
    const std::string& secret_sha256) {
  TETHER_ASSIGN_OR_RETURN(
      auto r, query("SELECT id, secret_sha256, created_at, expires_at, used_at, used_by, mac, "
                    "server_url FROM enrollment_tokens WHERE secret_sha256 = $1",
                    {text(secret_sha256)}));
  if (PQntuples(r.get()) == 0) return std::optional<EnrollmentTokenRecord>{};
  const Row row(r.get(), 0);
  EnrollmentTokenRecord t;
  t.id = row.text(0);
  t.secret_sha256 = row.text(1);
  t.created_at = row.integer(2);
  t.expires_at = row.integer(3);
  if (!row.is_null(4)) t.used_at = row.integer(4);
  t.used_by = row.text(5);
  t.mac = row.text(6);
  t.server_url = row.text(7);
  return std::optional<EnrollmentTokenRecord>(std::move(t));
}

Result<int> PostgresStore::purge_enrollment_tokens(std::int64_t before) {
  return change("DELETE FROM enrollment_tokens WHERE expires_at < $1", {number(before)});
}

// ---- users ------------------------------------------------------------------------------

Result<bool> PostgresStore::insert_user(const UserRecord& user) {
  TETHER_ASSIGN_OR_RETURN(
      int inserted, change("INSERT INTO users (name, password_hash, created_at) "
                           "VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                           {text(user.name), text(user.password_hash), number(user.created_at)}));
  return inserted == 1;
}

Result<std::optional<UserRecord>> PostgresStore::find_user(const std::string& name) {
  TETHER_ASSIGN_OR_RETURN(
      auto r,
      query("SELECT name, password_hash, created_at FROM users WHERE name = $1", {text(name)}));
  if (PQntuples(r.get()) == 0) return std::optional<UserRecord>{};
  const Row row(r.get(), 0);
  return std::optional<UserRecord>(UserRecord{row.text(0), row.text(1), row.integer(2)});
}

Result<std::vector<UserRecord>> PostgresStore::list_users() {
  TETHER_ASSIGN_OR_RETURN(auto r, query("SELECT name, password_hash, created_at FROM users "
                                        "ORDER BY name COLLATE \"C\""));
  std::vector<UserRecord> out;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    const Row row(r.get(), i);
    out.push_back(UserRecord{row.text(0), row.text(1), row.integer(2)});
  }
  return out;
}

Result<bool> PostgresStore::delete_user(const std::string& name) {
  TETHER_ASSIGN_OR_RETURN(int deleted, change("DELETE FROM users WHERE name = $1", {text(name)}));
  return deleted == 1;
}

// ---- shadowing audit --------------------------------------------------------------------

Status PostgresStore::save_shadow_audit(const ShadowAuditRecord& r) {
  return execute(
      "INSERT INTO shadow_audit (session_id, device_id, hostname, admin, viewer, view_only, "
      "requested_at, started_at, ended_at, bytes_to_viewer, bytes_to_device, end_reason, "
      "end_message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
      "ON CONFLICT (session_id) DO UPDATE SET device_id = $2, hostname = $3, admin = $4, "
      "viewer = $5, view_only = $6, requested_at = $7, started_at = $8, ended_at = $9, "
      "bytes_to_viewer = $10, bytes_to_device = $11, end_reason = $12, end_message = $13",
      {text(r.session_id, 64), text(r.device_id, 64), text(r.hostname, kMaxHostname),
       text(r.admin, 128), text(r.viewer, 16), flag(r.view_only), number(r.requested_at),
       number_or_null(r.started_at), number_or_null(r.ended_at), number(r.bytes_to_viewer),
       number(r.bytes_to_device), text_or_null(r.end_reason, 64),
       text_or_null(r.end_message, 1024)});
}

Result<std::vector<ShadowAuditRecord>> PostgresStore::list_shadow_audit(
    const std::string& device_id, int limit) {
  TETHER_ASSIGN_OR_RETURN(
      auto r, query("SELECT session_id, device_id, hostname, admin, viewer, view_only, "
                    "requested_at, started_at, ended_at, bytes_to_viewer, bytes_to_device, "
                    "end_reason, end_message FROM shadow_audit "
                    "WHERE $1::text = '' OR device_id = $1 "
                    "ORDER BY requested_at DESC, seq DESC LIMIT $2",
                    {text(device_id), number(limit)}));
  std::vector<ShadowAuditRecord> out;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    const Row row(r.get(), i);
    ShadowAuditRecord a;
    a.session_id = row.text(0);
    a.device_id = row.text(1);
    a.hostname = row.text(2);
    a.admin = row.text(3);
    a.viewer = row.text(4);
    a.view_only = row.boolean(5);
    a.requested_at = row.integer(6);
    if (!row.is_null(7)) a.started_at = row.integer(7);
    if (!row.is_null(8)) a.ended_at = row.integer(8);
    a.bytes_to_viewer = row.integer(9);
    a.bytes_to_device = row.integer(10);
    a.end_reason = row.text(11);
    a.end_message = row.text(12);
    out.push_back(std::move(a));
  }
  return out;
}

// ---- gateways ---------------------------------------------------------------------------

Result<bool> PostgresStore::insert_gateway(const GatewayRecord& g) {
  TETHER_ASSIGN_OR_RETURN(
      int inserted,
      change(std::string("INSERT INTO gateways (") + kGatewayColumns +
                 ") VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING",
             {text(g.name, 64), text(g.url, 512), text(g.join_secret_sha256, 64),
              number(g.join_expires_at), number(g.joined_at), text(g.cert_fingerprint, 64),
              number(g.created_at)}));
  return inserted == 1;
}

Result<std::optional<GatewayRecord>> PostgresStore::find_gateway(const std::string& name) {
  TETHER_ASSIGN_OR_RETURN(
      auto r, query(std::string("SELECT ") + kGatewayColumns + " FROM gateways WHERE name = $1",
                    {text(name)}));
  if (PQntuples(r.get()) == 0) return std::optional<GatewayRecord>{};
  return std::optional<GatewayRecord>(read_gateway(Row(r.get(), 0)));
}

Result<std::vector<GatewayRecord>> PostgresStore::list_gateways() {
  TETHER_ASSIGN_OR_RETURN(auto r, query(std::string("SELECT ") + kGatewayColumns +
                                        " FROM gateways ORDER BY name COLLATE \"C\""));
  std::vector<GatewayRecord> out;
  for (int i = 0; i < PQntuples(r.get()); ++i) out.push_back(read_gateway(Row(r.get(), i)));
  return out;
}

Result<bool> PostgresStore::remove_gateway(const std::string& name) {
  TETHER_ASSIGN_OR_RETURN(int removed,
                          change("DELETE FROM gateways WHERE name = $1", {text(name)}));
  return removed == 1;
}

Result<bool> PostgresStore::mark_gateway_joined(const std::string& name,
                                                const std::string& secret_sha256, std::int64_t now,
                                                const std::string& cert_fingerprint) {
  if (secret_sha256.empty()) return false;
  // One statement: the row lock makes a racing second UPDATE re-check joined_at and lose.
  TETHER_ASSIGN_OR_RETURN(
      int joined,
      change("UPDATE gateways SET joined_at = $3, cert_fingerprint = $4, "
             "join_secret_sha256 = '' WHERE name = $1 AND joined_at = 0 AND "
             "join_secret_sha256 = $2 AND join_expires_at > $3",
             {text(name), text(secret_sha256), number(now), text(cert_fingerprint, 64)}));
  return joined == 1;
}

// ---- web API sessions -------------------------------------------------------------------

Status PostgresStore::insert_api_session(const ApiSessionRecord& session, std::int64_t now,
                                         std::size_t max_sessions) {
  TETHER_ASSIGN_OR_RETURN(auto tx, Transaction::begin(*this));
  // Instances logging users in at once take turns here, so the cap holds across them.
  TETHER_TRY(execute("SELECT pg_advisory_xact_lock($1::bigint)", {kSessionLockKey}));
  TETHER_TRY(execute("DELETE FROM api_sessions WHERE expires_at <= $1", {number(now)}));
  // Full: the sessions closest to their end go first (seq: the older among equals).
  TETHER_TRY(
      execute("DELETE FROM api_sessions WHERE token_sha256 IN (SELECT token_sha256 FROM "
              "api_sessions ORDER BY expires_at, seq LIMIT greatest(0, (SELECT count(*) "
              "FROM api_sessions) - $1 + 1))",
              {number(static_cast<std::int64_t>(max_sessions))}));
  TETHER_TRY(
      execute("INSERT INTO api_sessions (token_sha256, principal, admin, created_at, "
              "expires_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token_sha256) DO "
              "UPDATE SET principal = $2, admin = $3, created_at = $4, expires_at = $5",
              {text(session.token_sha256, 64), text(session.principal, 128), flag(session.admin),
               number(session.created_at), number(session.expires_at)}));
  return tx.commit();
}

Result<std::optional<ApiSessionRecord>> PostgresStore::find_api_session(
    const std::string& token_sha256, std::int64_t now) {
  TETHER_ASSIGN_OR_RETURN(
      auto r, query("SELECT token_sha256, principal, admin, created_at, expires_at FROM "
                    "api_sessions WHERE token_sha256 = $1 AND expires_at > $2",
                    {text(token_sha256), number(now)}));
  if (PQntuples(r.get()) == 0) return std::optional<ApiSessionRecord>{};
  const Row row(r.get(), 0);
  return std::optional<ApiSessionRecord>(
      ApiSessionRecord{row.text(0), row.text(1), row.boolean(2), row.integer(3), row.integer(4)});
}

Result<bool> PostgresStore::delete_api_session(const std::string& token_sha256) {
  TETHER_ASSIGN_OR_RETURN(int deleted, change("DELETE FROM api_sessions WHERE token_sha256 = $1",
                                              {text(token_sha256)}));
  return deleted == 1;
}

Result<int> PostgresStore::delete_api_sessions_of(const std::string& principal) {
  return change("DELETE FROM api_sessions WHERE principal = $1 AND NOT admin", {text(principal)});
}

Result<int> PostgresStore::purge_api_sessions(std::int64_t now) {
  return change("DELETE FROM api_sessions WHERE expires_at <= $1", {number(now)});
}

Result<std::int64_t> PostgresStore::count_api_sessions(std::int64_t now) {
  TETHER_ASSIGN_OR_RETURN(
      auto r, query("SELECT count(*) FROM api_sessions WHERE expires_at > $1", {number(now)}));
  return Row(r.get(), 0).integer(0);
}

}  // namespace tether::server
