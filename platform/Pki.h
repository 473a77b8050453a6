// The X.509 work of Tether, on OpenSSL 3 EVP APIs: EC P-256 keys, self-signed and issued
// certificates, CSRs, fingerprints, chain verification. No files and no I/O here: callers
// (the agent's identity store, the server's CA) decide where PEM goes.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "common/Result.h"
#include "platform/OpenSsl.h"

namespace tether::pki {

using Sha256 = std::array<std::uint8_t, 32>;

// What a certificate may be used for; decides basicConstraints, keyUsage and extended key
// usage. Device certificates are client-only so that a device can never pose as a server.
enum class CertUsage { kCa, kServer, kClient };

[[nodiscard]] Result<ssl::PkeyPtr> generate_p256_key();
[[nodiscard]] Result<std::string> private_key_to_pem(EVP_PKEY* key);
[[nodiscard]] Result<ssl::PkeyPtr> private_key_from_pem(std::string_view pem);

// SHA-256 over the DER SubjectPublicKeyInfo: the device id, as 64 lower-case hex digits.
[[nodiscard]] Result<Sha256> spki_sha256(EVP_PKEY* key);
[[nodiscard]] std::string to_hex(const Sha256& digest);

[[nodiscard]] Result<ssl::X509Ptr> certificate_from_pem(std::string_view pem);
// Every certificate in a PEM bundle (at least one, else an error).
[[nodiscard]] Result<std::vector<ssl::X509Ptr>> certificates_from_pem(std::string_view pem);
[[nodiscard]] Result<std::string> certificate_to_pem(X509* cert);
// SHA-256 over the certificate's DER encoding (what `openssl x509 -fingerprint -sha256`
// prints), as 64 lower-case hex digits.
[[nodiscard]] Result<std::string> certificate_fingerprint(X509* cert);
[[nodiscard]] bool key_matches_certificate(EVP_PKEY* key, X509* cert);

struct CertificateRequest {
  std::string common_name;
  std::vector<std::string> dns_names;     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries
  CertUsage usage = CertUsage::kClient;
  std::chrono::seconds lifetime{std::chrono::hours(24 * 365)};
};

// A self-signed certificate for `key`.
[[nodiscard]] Result<ssl::X509Ptr> make_self_signed(EVP_PKEY* key, const CertificateRequest& req);
// A certificate for `subject_key` issued by `issuer_cert`/`issuer_key`. The validity starts
// in the past to tolerate small clock differences: five minutes, or a tenth of the lifetime
// when that is shorter.
[[nodiscard]] Result<ssl::X509Ptr> issue_certificate(EVP_PKEY* subject_key,
                                                     const CertificateRequest& req,
                                                     X509* issuer_cert, EVP_PKEY* issuer_key);

[[nodiscard]] Result<std::string> make_csr_pem(EVP_PKEY* key, std::string_view common_name);
// Parses a CSR and checks its self-signature; returns its public key (the only thing the
// server takes from it: names and usages are the server's decision).
[[nodiscard]] Result<ssl::PkeyPtr> public_key_from_csr(std::string_view pem);

struct CertificateInfo {
  std::string subject;  // "CN=..."
  std::string issuer;
  std::string common_name;
  std::string serial;  // hex
  std::time_t not_before = 0;
  std::time_t not_after = 0;
  std::string fingerprint;                      // SHA-256 of DER, hex
  std::string public_key;                       // "EC P-256"
  std::string spki_sha256;                      // hex
  std::vector<std::string> subject_alt_names;   // "DNS:x", "IP:1.2.3.4"
  std::vector<std::string> extended_key_usage;  // "serverAuth", "clientAuth"
  bool is_ca = false;
  bool self_signed = false;
};
[[nodiscard]] Result<CertificateInfo> describe(X509* cert);

// Verifies `leaf` (plus `intermediates`) up to one of `trusted`, for `usage` (kServer checks
// serverAuth, kClient clientAuth), at `at` (0: now). The error says why in words.
[[nodiscard]] Status verify_certificate(X509* leaf, const std::vector<X509*>& intermediates,
                                        const std::vector<X509*>& trusted, CertUsage usage,
                                        std::time_t at = 0);

// Verifies a chain a peer presented when the trust anchors are known only by fingerprint
// (the agent pins its installation's CA set): a presented certificate whose SHA-256
// fingerprint is in `pinned` becomes the trust anchor. With `param` (an SSL connection's
// verification parameters), its host/IP check applies too. Returns the fingerprint of the CA
// the chain was verified against.
[[nodiscard]] Result<std::string> verify_pinned_chain(X509* leaf,
                                                      const std::vector<X509*>& presented,
                                                      const std::vector<std::string>& pinned,
                                                      CertUsage usage,
                                                      const X509_VERIFY_PARAM* param = nullptr);

// "2026-11-22 02:01:46 UTC"
[[nodiscard]] std::string format_utc(std::time_t t);

}  // namespace tether::pki
