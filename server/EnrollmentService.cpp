#include "server/EnrollmentService.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <ctime>

#include "common/Base64.h"
#include "common/Hex.h"
#include "platform/Pki.h"
#include "protocol/EnrollmentToken.h"
#include "protocol/MacAddress.h"

namespace tether::server {
namespace {

constexpr std::chrono::seconds kMinTtl{1};
constexpr std::chrono::seconds kMaxTtl{std::chrono::hours(24 * 30)};

}  // namespace

std::string sha256_hex(std::string_view text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr);
  return hex_encode(std::span<const std::uint8_t>(md, len));
}

Result<std::string> random_hex(std::size_t bytes) {
  std::vector<std::uint8_t> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) {
    return make_error(Errc::kCrypto, "no randomness available");
  }
  return hex_encode(buf);
}

EnrollmentService::EnrollmentService(Store& store, const CertificateAuthority& ca,
                                     EnrollmentSettings settings, WallClock wall_clock)
    : store_(store),
      ca_(ca),
      settings_(std::move(settings)),
      wall_clock_(std::move(wall_clock)),
      limiter_(settings_.rate_per_minute) {}

std::int64_t EnrollmentService::now() const {
  return wall_clock_ ? wall_clock_() : static_cast<std::int64_t>(std::time(nullptr));
}

Result<CreatedToken> EnrollmentService::create_token(std::optional<std::chrono::seconds> ttl,
                                                     const std::string& mac,
                                                     const std::string& server_url) {
  const std::chrono::seconds lifetime = ttl.value_or(settings_.default_token_ttl);
  if (lifetime < kMinTtl || lifetime > kMaxTtl) {
    return make_error(Errc::kBadValue, "ttl_s must be between 1 second and 30 days");
  }
  CreatedToken out;
  if (!mac.empty()) {
    auto parsed = protocol::MacAddress::parse(mac);
    if (!parsed.ok()) return make_error(Errc::kBadValue, "mac: " + parsed.error().message);
    out.mac = parsed->to_string();
  }
  std::vector<std::uint8_t> secret(protocol::kEnrollmentSecretBytes);
  if (RAND_bytes(secret.data(), static_cast<int>(secret.size())) != 1) {
    return make_error(Errc::kCrypto, "no randomness available");
  }
  const std::string secret_text = base64url_encode(secret);
  TETHER_ASSIGN_OR_RETURN(out.id, random_hex(12));
  EnrollmentTokenRecord record;
  record.id = out.id;
  record.secret_sha256 = sha256_hex(secret_text);
  record.created_at = now();
  record.expires_at = record.created_at + lifetime.count();
  record.mac = out.mac;
  record.server_url = server_url;
  TETHER_TRY(store_.insert_enrollment_token(record));
  out.expires_at = record.expires_at;
  out.token = protocol::format_enrollment_token(protocol::EnrollmentToken{
      server_url.empty() ? settings_.server_url : server_url, ca_.ca_fingerprint(), secret_text});
  return out;
}

std::optional<std::chrono::seconds> EnrollmentService::admit_attempt(
    const std::string& source, RateLimiter::Clock::time_point now) {
  auto wait = limiter_.take(source, now);
  if (wait) failed_.with({"rate_limited"}).inc();
  return wait;
}

namespace {

// The reason label of a failed enrollment (docs/metrics.md).
std::string enrollment_failure_reason(const Error& error) {
  if (error.message == kUnknownTokenMessage) return "unknown_token";
  if (error.message == kExpiredTokenMessage) return "expired_token";
  if (error.message == kUsedTokenMessage) return "used_token";
  switch (error.code) {
    case Errc::kPermissionDenied:
      return error.message.find("bound to MAC") != std::string::npos ? "mac_mismatch" : "revoked";
    case Errc::kBadValue: return "bad_request";
    default: return "internal";
  }
}

}  // namespace

void EnrollmentService::set_metrics(MetricsRegistry& registry) {
  enrolled_ = registry.counter_family(
      "tether_enrollments_total",
      "Devices enrolled, by whether the device was new or known already (re-enrolled).", {"kind"});
  failed_ = registry.counter_family("tether_enrollment_failures_total",
                                    "Enrollment attempts refused, by reason.", {"reason"});
  for (const char* kind : {"new", "re_enrolled"}) enrolled_.with({kind});
  for (const char* reason : {"rate_limited", "unknown_token", "expired_token", "used_token",
                             "mac_mismatch", "revoked", "bad_request", "internal"}) {
    failed_.with({reason});
  }
}

Result<EnrollmentResult> EnrollmentService::enroll(const EnrollmentRequest& request) {
  auto result = enroll_unmetered(request);
  if (result.ok()) {
    enrolled_.with({result->re_enrolled ? "re_enrolled" : "new"}).inc();
  } else {
    failed_.with({enrollment_failure_reason(result.error())}).inc();
  }
  return result;
}

Result<EnrollmentResult> EnrollmentService::enroll_unmetered(const EnrollmentRequest& request) {
  std::string secret = request.secret;
  if (secret.rfind(protocol::kEnrollmentTokenPrefix, 0) == 0) {
    auto token = protocol::parse_enrollment_token(secret);
    if (!token.ok()) return make_error(Errc::kUnauthenticated, kUnknownTokenMessage);
    secret = token->secret;
  }
  auto secret_bytes = base64url_decode(secret);
  if (!secret_bytes.ok() || secret_bytes->size() != protocol::kEnrollmentSecretBytes) {
    return make_error(Errc::kUnauthenticated, kUnknownTokenMessage);
  }
  const std::string presented_hash = sha256_hex(secret);
  TETHER_ASSIGN_OR_RETURN(auto token, store_.find_enrollment_token(presented_hash));
  // The lookup is by hash; the constant-time comparison guards against a backend whose
  // index lookup could be coaxed into matching something else.
  if (!token || token->secret_sha256.size() != presented_hash.size() ||
      CRYPTO_memcmp(token->secret_sha256.data(), presented_hash.data(), presented_hash.size()) !=
          0) {
    return make_error(Errc::kUnauthenticated, kUnknownTokenMessage);
  }
  const std::int64_t at = now();
  if (token->used_at) return make_error(Errc::kUnauthenticated, kUsedTokenMessage);
  if (token->expires_at <= at) return make_error(Errc::kUnauthenticated, kExpiredTokenMessage);
  if (!token->mac.empty() &&
      std::find(request.macs.begin(), request.macs.end(), token->mac) == request.macs.end()) {
    return make_error(Errc::kPermissionDenied, "this enrollment token is bound to MAC " +
                                                   token->mac +
                                                   ", which the device did not report");
  }

  auto key = pki::public_key_from_csr(request.csr_pem);
  if (!key.ok()) {
    return make_error(Errc::kBadValue, "bad certificate request: " + key.error().message);
  }
  TETHER_ASSIGN_OR_RETURN(auto spki, pki::spki_sha256(key->get()));
  const std::string device_id = pki::to_hex(spki);
  TETHER_ASSIGN_OR_RETURN(auto existing, store_.find_device(device_id));
  const std::string revoked_message =
      "the key of device " + device_id.substr(0, 12) + " was revoked; make a new key to enroll";
  if (existing && existing->revoked) return make_error(Errc::kPermissionDenied, revoked_message);

  TETHER_ASSIGN_OR_RETURN(IssuedCertificate cert, ca_.issue_device_certificate(key->get()));
  EnrolledDevice device;
  device.id = device_id;
  device.hostname = request.hostname;
  device.macs = request.macs;
  device.address = request.source_address;
  device.cert_serial = cert.serial;
  device.cert_expires = cert.not_after;
  TETHER_ASSIGN_OR_RETURN(device.new_online_key, random_hex(32));
  TETHER_ASSIGN_OR_RETURN(EnrollOutcome outcome,
                          store_.redeem_token_and_enroll(token->id, at, device));
  switch (outcome) {
    case EnrollOutcome::kEnrolled: break;
    case EnrollOutcome::kDeviceRevoked: return make_error(Errc::kPermissionDenied, revoked_message);
    case EnrollOutcome::kTokenNotRedeemable:
      // Another redemption won the race (or the token expired meanwhile).
      return make_error(Errc::kUnauthenticated,
                        token->expires_at <= now() ? kExpiredTokenMessage : kUsedTokenMessage);
  }
  EnrollmentResult result;
  result.device_id = device_id;
  result.certificate_pem = std::move(cert.certificate_pem);
  result.ca_certificates_pem = ca_.trusted_pems();
  result.server_url = token->server_url.empty() ? settings_.server_url : token->server_url;
  result.re_enrolled = existing.has_value();
  return result;
}

}  // namespace tether::server
