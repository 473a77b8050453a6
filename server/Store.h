// The server's persistent registry behind one interface, so that the SQL stays in one
// backend class (SqliteStore, the embedded default; PostgresStore for several instances on
// one database). Callers never see SQL or handles.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/Result.h"

namespace tether::server {

struct DeviceRecord {
  std::string id;    // SHA-256 of the device key's SPKI, 64 hex digits
  std::string name;  // given by an admin; empty until then
  std::string hostname;
  std::string agent_version;
  std::string os;
  std::vector<std::string> macs;
  std::string address;  // remote address of the last channel (or of enrollment)
  std::int64_t first_seen = 0;
  std::int64_t last_seen = 0;
  std::string cert_serial;
  std::int64_t cert_expires = 0;
  bool revoked = false;
  bool deleted = false;
  std::string online_key;      // 64 hex digits, made once per device
  std::string inventory_json;  // "" when none yet
  std::string status_json;     // "" when none yet
  // The settings document the server manages for the device (a JSON object, see
  // SettingsDocument.h); nullopt when an admin never set any, so nothing is pushed.
  std::optional<std::string> settings_json;
  // Why the device refused the stored document when it was pushed after hello; "" if it
  // did not (or it has not been pushed yet).
  std::string settings_error;
};

struct EnrollmentTokenRecord {
  std::string id;
  std::string secret_sha256;  // hex
  std::int64_t created_at = 0;
  std::int64_t expires_at = 0;
  std::optional<std::int64_t> used_at;
  std::string used_by;  // device id
  std::string mac;      // "" when not bound to a MAC
  // The URL the token names and the enrolled device is told to use: a gateway's for
  // `enroll-token create --via NAME`; "" for the server's own.
  std::string server_url;
};

// A gateway (docs/api.md, Gateways): registered by an admin with a one-time join secret,
// joined when the gateway redeemed it for its certificate.
struct GatewayRecord {
  std::string name;                // [a-z0-9-]{1,32}
  std::string url;                 // wss://HOST:PORT, where the server connects out to it
  std::string join_secret_sha256;  // hex; "" once used
  std::int64_t join_expires_at = 0;
  std::int64_t joined_at = 0;    // 0 until joined
  std::string cert_fingerprint;  // SHA-256 of the issued certificate; "" until joined
  std::int64_t created_at = 0;
};

// A web app user (docs/api.md, Users). The admin token's holder is not one: "admin" is
// reserved.
struct UserRecord {
  std::string name;
  std::string password_hash;  // PasswordHash.h's encoding
  std::int64_t created_at = 0;
};

// One shadowing session in the audit log (docs/api.md, audit). Written when the session is
// requested and again as it starts and ends.
struct ShadowAuditRecord {
  std::string session_id;
  std::string device_id;
  std::string hostname;
  std::string admin;   // who asked
  std::string viewer;  // "browser" or "external"
  bool view_only = false;
  std::int64_t requested_at = 0;
  std::optional<std::int64_t> started_at;  // spliced at
  std::optional<std::int64_t> ended_at;
  std::int64_t bytes_to_viewer = 0;
  std::int64_t bytes_to_device = 0;
  std::string end_reason;  // "" while it runs
  std::string end_message;
};

// A web API session (server/UserApi.h), kept in the store so that every server instance
// knows it. Only the SHA-256 of the session token is stored, never the token.
struct ApiSessionRecord {
  std::string token_sha256;  // hex, 64 digits
  std::string principal;     // kAdminPrincipal or a user's name
  bool admin = false;        // opened with the admin token
  std::int64_t created_at = 0;
  std::int64_t expires_at = 0;  // unix seconds; the session is gone from this second on
};

// What enrollment writes about a device (new or re-enrolling).
struct EnrolledDevice {
  std::string id;
  std::string hostname;
  std::vector<std::string> macs;
  std::string address;
  std::string cert_serial;
  std::int64_t cert_expires = 0;
  std::string new_online_key;  // used only when the device is new
};

enum class EnrollOutcome {
  kEnrolled,
  kTokenNotRedeemable,  // used (or expired) meanwhile: another redemption won
  kDeviceRevoked,
};

// What hello tells about a device.
struct DeviceHelloRecord {
  std::string id;
  std::string hostname;
  std::string agent_version;
  std::string os;
  std::string address;
  std::int64_t seen_at = 0;
};

// Activity kept in memory and written in batches (last seen, latest status).
struct DeviceActivity {
  std::string id;
  std::int64_t last_seen = 0;
  std::string address;
  std::string status_json;  // "" leaves the stored status as it is
};

class Store {
 public:
  virtual ~Store() = default;

  // A device by id, including revoked and deleted ones (their keys stay refused).
  [[nodiscard]] virtual Result<std::optional<DeviceRecord>> find_device(const std::string& id) = 0;
  // Every device that is not deleted, ordered by id.
  [[nodiscard]] virtual Result<std::vector<DeviceRecord>> list_devices() = 0;

  // In one transaction: marks the token used by the device (only if it is unused and not
  // expired at `now`) and inserts or updates the device (only if it is not revoked).
  [[nodiscard]] virtual Result<EnrollOutcome> redeem_token_and_enroll(
      const std::string& token_id, std::int64_t now, const EnrolledDevice& device) = 0;
  [[nodiscard]] virtual Status record_hello(const DeviceHelloRecord& hello) = 0;
  [[nodiscard]] virtual Status update_certificate(const std::string& id, const std::string& serial,
                                                  std::int64_t expires) = 0;
  [[nodiscard]] virtual Status update_inventory(const std::string& id,
                                                const std::string& inventory_json) = 0;
  // Stores the device's settings document and clears settings_error (nothing is known yet
  // about how the device takes the new document). kNotFound when there is no such device.
  [[nodiscard]] virtual Status update_settings(const std::string& id,
                                               const std::string& settings_json) = 0;
  // Records why the device refused its settings ("" clears). kNotFound as above.
  [[nodiscard]] virtual Status set_settings_error(const std::string& id,
                                                  const std::string& error) = 0;
  // Writes a batch in one transaction.
  [[nodiscard]] virtual Status record_activity(const std::vector<DeviceActivity>& batch) = 0;
  // Marks a device revoked (and deleted when `also_delete`); false when there is no such device.
  [[nodiscard]] virtual Result<bool> revoke_device(const std::string& id, bool also_delete) = 0;

  [[nodiscard]] virtual Status insert_enrollment_token(const EnrollmentTokenRecord& token) = 0;
  [[nodiscard]] virtual Result<std::optional<EnrollmentTokenRecord>> find_enrollment_token(
      const std::string& secret_sha256) = 0;
  // Forgets tokens that expired before `before` (used or not); returns how many.
  [[nodiscard]] virtual Result<int> purge_enrollment_tokens(std::int64_t before) = 0;

  // Users: false from insert_user when the name is taken, from delete_user when unknown.
  [[nodiscard]] virtual Result<bool> insert_user(const UserRecord& user) = 0;
  [[nodiscard]] virtual Result<std::optional<UserRecord>> find_user(const std::string& name) = 0;
  // Ordered by name.
  [[nodiscard]] virtual Result<std::vector<UserRecord>> list_users() = 0;
  [[nodiscard]] virtual Result<bool> delete_user(const std::string& name) = 0;

  // Shadowing audit: inserts the row or replaces the one with the same session id.
  [[nodiscard]] virtual Status save_shadow_audit(const ShadowAuditRecord& record) = 0;
  // Newest first (by requested_at, then session id); `device_id` "" for every device.
  [[nodiscard]] virtual Result<std::vector<ShadowAuditRecord>> list_shadow_audit(
      const std::string& device_id, int limit) = 0;

  // Gateways: false from insert_gateway when the name is taken, from remove_gateway when
  // unknown.
  [[nodiscard]] virtual Result<bool> insert_gateway(const GatewayRecord& gateway) = 0;
  [[nodiscard]] virtual Result<std::optional<GatewayRecord>> find_gateway(
      const std::string& name) = 0;
  // Ordered by name.
  [[nodiscard]] virtual Result<std::vector<GatewayRecord>> list_gateways() = 0;
  [[nodiscard]] virtual Result<bool> remove_gateway(const std::string& name) = 0;
  // In one statement: marks the gateway joined at `now` with its certificate's fingerprint and
  // forgets the join secret, only if it is not joined yet, its secret hash is
  // `secret_sha256` and the secret has not expired at `now`. false when another redemption
  // won (or the secret expired meanwhile).
  [[nodiscard]] virtual Result<bool> mark_gateway_joined(const std::string& name,
                                                         const std::string& secret_sha256,
                                                         std::int64_t now,
                                                         const std::string& cert_fingerprint) = 0;

  // Web API sessions. insert_api_session, in one transaction: forgets the sessions expired at
  // `now`, then, while `max_sessions` or more are left, the one closest to its end (the oldest
  // first among equals), then inserts `session`.
  [[nodiscard]] virtual Status insert_api_session(const ApiSessionRecord& session, std::int64_t now,
                                                  std::size_t max_sessions) = 0;
  // nullopt when unknown or expired at `now`.
  [[nodiscard]] virtual Result<std::optional<ApiSessionRecord>> find_api_session(
      const std::string& token_sha256, std::int64_t now) = 0;
  // false when there was no such session.
  [[nodiscard]] virtual Result<bool> delete_api_session(const std::string& token_sha256) = 0;
  // Ends every session of the user `principal` (not those opened with the admin token);
  // returns how many.
  [[nodiscard]] virtual Result<int> delete_api_sessions_of(const std::string& principal) = 0;
  // Forgets the sessions expired at `now`; returns how many.
  [[nodiscard]] virtual Result<int> purge_api_sessions(std::int64_t now) = 0;
  // Sessions not expired at `now`.
  [[nodiscard]] virtual Result<std::int64_t> count_api_sessions(std::int64_t now) = 0;
};

}  // namespace tether::server
