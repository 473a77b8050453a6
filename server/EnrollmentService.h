// Enrollment tokens and their redemption: an admin makes a single-use, expiring token; a
// device redeems it with a CSR and receives its certificate. Only SHA-256(secret) is stored.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/MetricsRegistry.h"
#include "common/Result.h"
#include "server/CertificateAuthority.h"
#include "server/RateLimiter.h"
#include "server/Store.h"

namespace tether::server {

struct EnrollmentSettings {
  std::string server_url;  // wss://HOST:PORT, put into tokens
  std::chrono::seconds default_token_ttl{std::chrono::hours(24)};
  int rate_per_minute = 30;
};

struct CreatedToken {
  std::string id;
  std::string token;  // the whole tether1.… string; the secret is in it and nowhere else
  std::int64_t expires_at = 0;
  std::string mac;  // "" when not bound
};

struct EnrollmentRequest {
  std::string secret;  // base64url secret (a whole token string is accepted too)
  std::string csr_pem;
  std::string hostname;
  std::vector<std::string> macs;  // canonical form
  std::string source_address;
};

struct EnrollmentResult {
  std::string device_id;
  std::string certificate_pem;
  std::vector<std::string> ca_certificates_pem;
  std::string server_url;
  bool re_enrolled = false;  // the device was known already
};

class EnrollmentService {
 public:
  using WallClock = std::function<std::int64_t()>;  // unix seconds

  EnrollmentService(Store& store, const CertificateAuthority& ca, EnrollmentSettings settings,
                    WallClock wall_clock = {});

  // ttl: nullopt for the default. Errors: kBadValue for a ttl outside 1 s … 30 days or a bad MAC.
  // `server_url`: the URL the token names and the device is told to use ("" for the
  // server's own; a gateway's for `enroll-token create --via`).
  [[nodiscard]] Result<CreatedToken> create_token(std::optional<std::chrono::seconds> ttl,
                                                  const std::string& mac,
                                                  const std::string& server_url = "");

  // Counts an attempt from `source`; returns how long to wait when over the limit.
  [[nodiscard]] std::optional<std::chrono::seconds> admit_attempt(
      const std::string& source, RateLimiter::Clock::time_point now = RateLimiter::Clock::now());

  // Errors: kUnauthenticated (unknown, expired or used token), kPermissionDenied (MAC
  // binding, revoked key), kBadValue (CSR), others from the store.
  [[nodiscard]] Result<EnrollmentResult> enroll(const EnrollmentRequest& request);

  // Registers tether_enrollments_total and tether_enrollment_failures_total{reason}
  // (docs/metrics.md) in `registry`, which must outlive this service.
  void set_metrics(MetricsRegistry& registry);

 private:
  std::int64_t now() const;
  Result<EnrollmentResult> enroll_unmetered(const EnrollmentRequest& request);
  MetricsRegistry::Family<Counter> enrolled_;
  MetricsRegistry::Family<Counter> failed_;

  Store& store_;
  const CertificateAuthority& ca_;
  EnrollmentSettings settings_;
  WallClock wall_clock_;
  RateLimiter limiter_;
};

// Messages the enroll endpoint returns (docs/api.md), shared with tests.
inline constexpr const char* kUnknownTokenMessage = "unknown enrollment token";
inline constexpr const char* kExpiredTokenMessage = "this enrollment token has expired";
inline constexpr const char* kUsedTokenMessage = "this enrollment token was already used";

// SHA-256 of `text`, as hex.
[[nodiscard]] std::string sha256_hex(std::string_view text);
// `bytes` random bytes as lower-case hex.
[[nodiscard]] Result<std::string> random_hex(std::size_t bytes);

}  // namespace tether::server
