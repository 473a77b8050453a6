// The Store on PostgreSQL (libpq), for several server instances on one database
// (store.url = postgresql://...). Same semantics as SqliteStore; the schema is moved forward
// at open by the migrations in PostgresStore.cpp, recorded in the table schema_migrations and
// run under a session advisory lock (kMigrationLockKey) so that instances starting at the same
// moment apply each migration once.
//
// Calls are synchronous, like the Store interface: each one blocks the server's event loop
// for a round trip to the database (well under a millisecond on a LAN, more over a WAN, and up
// to connect_timeout while the database is unreachable). That keeps every caller simple and
// every "only one wins" contract a plain SQL transaction; the hot path stays cheap because
// heartbeats and status are written in batches (record_activity), and reads that happen per
// request are single-row lookups by primary key. A server that needs lower latency should sit
// next to its database.
//
// One connection per object. A statement that fails because the connection was lost is
// retried once on a reset connection when it was not inside a transaction; a transaction that
// loses its connection fails (nothing of it is committed) and the next call reconnects.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/PgHandles.h"
#include "server/Store.h"

namespace tether::server {

class PostgresStore final : public Store {
 public:
  // The advisory lock key taken while migrating ("tether" in ASCII, then 1).
  static constexpr std::int64_t kMigrationLockKey = 0x7465746865720001;

  // Connects to `url` (postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DB[?...] or a libpq
  // keyword/value string) and migrates the schema. Errors name the database, never the
  // password.
  [[nodiscard]] static Result<std::unique_ptr<PostgresStore>> open(const std::string& url);
  ~PostgresStore() override;
  PostgresStore(const PostgresStore&) = delete;
  PostgresStore& operator=(const PostgresStore&) = delete;

  // `url` with any password left out: postgresql://USER@HOST:PORT/DB. For logs and errors.
  [[nodiscard]] static std::string describe_url(const std::string& url);
  // This connection's database, as describe_url writes it.
  [[nodiscard]] const std::string& description() const noexcept { return description_; }

  // The schema version this build writes, and the database's.
  [[nodiscard]] static int latest_schema_version();
  [[nodiscard]] Result<int> schema_version();
  // The server process of this connection (tests end it to check the reconnect).
  [[nodiscard]] int backend_pid() const noexcept;

  Result<std::optional<DeviceRecord>> find_device(const std::string& id) override;
  Result<std::vector<DeviceRecord>> list_devices() override;
  Result<EnrollOutcome> redeem_token_and_enroll(const std::string& token_id, std::int64_t now,
                                                const EnrolledDevice& device) override;
  Status record_hello(const DeviceHelloRecord& hello) override;
  Status update_certificate(const std::string& id, const std::string& serial,
                            std::int64_t expires) override;
  Status update_inventory(const std::string& id, const std::string& inventory_json) override;
  Status update_settings(const std::string& id, const std::string& settings_json) override;
  Status set_settings_error(const std::string& id, const std::string& error) override;
  Status record_activity(const std::vector<DeviceActivity>& batch) override;
  Result<bool> revoke_device(const std::string& id, bool also_delete) override;
  Status insert_enrollment_token(const EnrollmentTokenRecord& token) override;
  Result<std::optional<EnrollmentTokenRecord>> find_enrollment_token(
      const std::string& secret_sha256) override;
  Result<int> purge_enrollment_tokens(std::int64_t before) override;
  Result<bool> insert_user(const UserRecord& user) override;
  Result<std::optional<UserRecord>> find_user(const std::string& name) override;
  Result<std::vector<UserRecord>> list_users() override;
  Result<bool> delete_user(const std::string& name) override;
  Status save_shadow_audit(const ShadowAuditRecord& record) override;
  Result<std::vector<ShadowAuditRecord>> list_shadow_audit(const std::string& device_id,
                                                           int limit) override;
  Result<bool> insert_gateway(const GatewayRecord& gateway) override;
  Result<std::optional<GatewayRecord>> find_gateway(const std::string& name) override;
  Result<std::vector<GatewayRecord>> list_gateways() override;
  Result<bool> remove_gateway(const std::string& name) override;
  Result<bool> mark_gateway_joined(const std::string& name, const std::string& secret_sha256,
                                   std::int64_t now, const std::string& cert_fingerprint) override;
  Status insert_api_session(const ApiSessionRecord& session, std::int64_t now,
                            std::size_t max_sessions) override;
  Result<std::optional<ApiSessionRecord>> find_api_session(const std::string& token_sha256,
                                                           std::int64_t now) override;
  Result<bool> delete_api_session(const std::string& token_sha256) override;
  Result<int> delete_api_sessions_of(const std::string& principal) override;
  Result<int> purge_api_sessions(std::int64_t now) override;
  Result<std::int64_t> count_api_sessions(std::int64_t now) override;

 private:
  using ConnPtr = PgConnPtr;
  using ResultPtr = PgResultPtr;
  // A statement parameter: nullopt is SQL NULL.
  using Param = std::optional<std::string>;
  class Transaction;

  PostgresStore(ConnPtr conn, std::string description);
  Status migrate();
  // Runs one parameterised statement ($1, $2, ... in `sql`).
  Result<ResultPtr> query(std::string_view sql, const std::vector<Param>& params = {});
  // query() for a statement whose result is not read.
  Status execute(std::string_view sql, const std::vector<Param>& params);
  // Rows changed by an INSERT/UPDATE/DELETE run with query().
  Result<int> change(std::string_view sql, const std::vector<Param>& params);
  // Several statements without parameters (migrations, BEGIN/COMMIT).
  Status exec_script(std::string_view sql);
  Result<ResultPtr> run_once(std::string_view sql, const std::vector<Param>* params);
  Error error_of(pg_result* result, std::string_view what) const;

  ConnPtr conn_;
  std::string description_;
  bool in_transaction_ = false;
};

}  // namespace tether::server
