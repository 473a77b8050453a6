// The embedded default Store: one SQLite file (tether.db) in the state directory, in WAL
// mode, its schema moved forward by the migrations in SqliteStore.cpp (PRAGMA user_version).
// One connection per object; used from one thread (the server's event loop).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "server/Store.h"

struct sqlite3;

namespace tether::server {

class SqliteStore final : public Store {
 public:
  // Opens (creating it 0600 if needed) and migrates the database at `path`.
  [[nodiscard]] static Result<std::unique_ptr<SqliteStore>> open(const std::string& path);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  // The schema version this build writes, and the database's.
  [[nodiscard]] static int latest_schema_version();
  [[nodiscard]] Result<int> schema_version();

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
  struct DbCloser {
    void operator()(sqlite3* db) const noexcept;
  };
  using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

  SqliteStore(DbPtr db, std::string path);
  Status migrate();
  Status exec(std::string_view sql);

  DbPtr db_;
  std::string path_;
};

}  // namespace tether::server
