// The installation's certificate authority and the server's own TLS identity, kept in the
// state directory:
//
//   ca.key (0600), ca.crt        EC P-256 CA, made at first start, ~10 years
//   server.key (0600), server.crt  issued by the CA; server.crt holds the leaf and then the CA,
//                                  so that a device pinning the CA fingerprint finds it in the
//                                  chain the server presents
//   trusted-cas.pem (optional)   further CAs devices may chain to (CA rotation)
//   link.key (0600), link.crt    the server's client identity on its outbound links to
//                                gateways: CN kServerLinkCommonName, client usage only;
//                                link.crt holds the leaf and then the CA
//
// Library code: returns errors, never logs.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "common/Result.h"
#include "platform/OpenSsl.h"

namespace tether::server {

// The CN of the server's link certificate. A gateway accepts a /link connection only from a
// client certificate of this CA with exactly this CN; device certificates carry the device id
// (64 hex digits) and gateway certificates "tether-gateway NAME", so neither can pose as it.
inline constexpr const char* kServerLinkCommonName = "tether-server-link";

struct CertificateAuthorityOptions {
  std::string state_dir;
  // Every name the server certificate must carry (DNS names and IP addresses, mixed).
  std::vector<std::string> server_names;
  std::chrono::seconds server_cert_lifetime{std::chrono::hours(24 * 365)};
  std::chrono::seconds device_cert_lifetime{std::chrono::hours(24 * 90)};
};

struct IssuedCertificate {
  std::string device_id;  // SHA-256 of the key's SPKI, hex
  std::string certificate_pem;
  std::string serial;  // hex
  std::int64_t not_after = 0;
};

class CertificateAuthority {
 public:
  // What open() did, for the caller to log.
  struct OpenReport {
    bool created_ca = false;
    bool issued_server_certificate = false;
    std::string server_certificate_reason;  // why it was (re-)issued
    bool issued_link_certificate = false;
    std::string link_certificate_reason;
    // The clock is outside the CA's validity (wrong, or the CA expired): nothing re-issued.
    std::string clock_problem;
  };

  // Loads the CA and the server certificate from the state directory, creating what is
  // missing, and re-issues the server certificate when its names changed or it expires
  // soon. Refuses, naming the file, a key readable by others, a corrupt file, or a key that
  // does not match its certificate.
  [[nodiscard]] static Result<CertificateAuthority> open(const CertificateAuthorityOptions& options,
                                                         OpenReport* report = nullptr);

  // A device certificate (client usage only, CN = device id) for the key in `csr_pem`.
  [[nodiscard]] Result<IssuedCertificate> issue_device_certificate(std::string_view csr_pem) const;
  [[nodiscard]] Result<IssuedCertificate> issue_device_certificate(EVP_PKEY* device_key) const;

  // A gateway's TLS certificate (server usage only, CN "tether-gateway NAME" cut to 64
  // characters, subjectAltName = `host`, the host of the gateway's URL, as a DNS name or an IP
  // address) for the key in `csr_pem`. Lifetime: the server certificate's.
  [[nodiscard]] Result<IssuedCertificate> issue_gateway_certificate(std::string_view csr_pem,
                                                                    const std::string& name,
                                                                    const std::string& host) const;

  // Issues link.crt again when it is missing, not of this CA, or expires soon; returns why it
  // did ("" when it was fine). open() calls it; a long-running server may call it daily.
  [[nodiscard]] Result<std::string> refresh_link_certificate();

  [[nodiscard]] X509* ca_certificate() const noexcept { return ca_cert_.get(); }
  [[nodiscard]] const std::string& ca_pem() const noexcept { return ca_pem_; }
  // SHA-256 of ca.crt's DER: what enrollment tokens pin.
  [[nodiscard]] const std::string& ca_fingerprint() const noexcept { return ca_fingerprint_; }
  // ca.crt first, then trusted-cas.pem's certificates.
  [[nodiscard]] std::vector<X509*> trusted() const;
  [[nodiscard]] const std::vector<std::string>& trusted_pems() const noexcept {
    return trusted_pems_;
  }
  [[nodiscard]] const std::vector<std::string>& trusted_fingerprints() const noexcept {
    return trusted_fingerprints_;
  }
  [[nodiscard]] std::string ca_certificate_path() const { return state_dir_ + "/ca.crt"; }
  [[nodiscard]] std::string server_certificate_path() const { return state_dir_ + "/server.crt"; }
  [[nodiscard]] std::string server_key_path() const { return state_dir_ + "/server.key"; }
  // The link certificate (leaf then CA) and its key, for the outbound links to gateways.
  [[nodiscard]] std::string link_certificate_path() const { return state_dir_ + "/link.crt"; }
  [[nodiscard]] std::string link_key_path() const { return state_dir_ + "/link.key"; }

 private:
  CertificateAuthority() = default;

  std::string state_dir_;
  std::chrono::seconds device_cert_lifetime_{0};
  std::chrono::seconds server_cert_lifetime_{0};
  ssl::PkeyPtr ca_key_;
  ssl::X509Ptr ca_cert_;
  std::string ca_pem_;
  std::string ca_fingerprint_;
  std::vector<ssl::X509Ptr> extra_trusted_;
  std::vector<std::string> trusted_pems_;
  std::vector<std::string> trusted_fingerprints_;
};

// Subject-alternative-name entries in the form pki::describe() reports them ("DNS:x",
// "IP:1.2.3.4"), sorted and unique; DNS names lower-cased.
[[nodiscard]] std::vector<std::string> normalized_alt_names(const std::vector<std::string>& names);

}  // namespace tether::server
