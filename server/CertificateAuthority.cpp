#include "server/CertificateAuthority.h"

#include <arpa/inet.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "common/FileIo.h"
#include "platform/ClockDiagnosis.h"
#include "platform/Pki.h"

namespace tether::server {
namespace {

constexpr std::chrono::seconds kCaLifetime{std::chrono::hours(24 * 3650)};
constexpr std::chrono::seconds kRenewServerBefore{std::chrono::hours(24 * 30)};
// Certificates are dated by the clock; a clock this far before a certificate's start is wrong.
constexpr std::time_t kClockSlack = 24 * 3600;

// "" when the clock is within the CA's validity, else why not (then the clock is wrong, or
// the CA has expired): certificates issued now would be dated by that clock.
std::string ca_clock_problem(X509* ca_cert, const std::string& path) {
  return pki::clock_skew_diagnosis({ca_cert}, std::time(nullptr),
                                   "the installation CA's certificate " + path, "this server");
}
constexpr std::size_t kMaxPemFile = 64 * 1024;

Result<ssl::PkeyPtr> load_private_key(const std::string& path) {
  TETHER_TRY(check_private_file(path));
  TETHER_ASSIGN_OR_RETURN(std::string pem, read_file(path, kMaxPemFile, true));
  auto key = pki::private_key_from_pem(pem);
  if (!key.ok()) return make_error(Errc::kCrypto, path + " is corrupt: " + key.error().message);
  return std::move(key).value();
}

Result<std::vector<ssl::X509Ptr>> load_certificates(const std::string& path) {
  TETHER_ASSIGN_OR_RETURN(std::string pem, read_file(path, kMaxPemFile, true));
  auto certs = pki::certificates_from_pem(pem);
  if (!certs.ok()) return make_error(Errc::kCrypto, path + " is corrupt: " + certs.error().message);
  return std::move(certs).value();
}

std::string ipv6_text(const unsigned char* p) {
  // The same spelling pki::describe() uses, so that sets compare equal.
  std::string out;
  for (int k = 0; k < 16; k += 2) {
    char part[8];
    (void)std::snprintf(part, sizeof part, "%s%x", k ? ":" : "", (p[k] << 8) | p[k + 1]);
    out += part;
  }
  return out;
}

struct SplitNames {
  std::vector<std::string> dns;
  std::vector<std::string> ips;
};

SplitNames split_names(const std::vector<std::string>& names) {
  SplitNames out;
  for (const auto& alt : normalized_alt_names(names)) {
    if (alt.rfind("DNS:", 0) == 0) out.dns.push_back(alt.substr(4));
    if (alt.rfind("IP:", 0) == 0) out.ips.push_back(alt.substr(3));
  }
  return out;
}

// Why the server certificate must be issued again, or "" when it is fine.
std::string server_certificate_problem(X509* leaf, X509* ca, const std::vector<std::string>& names,
                                       std::chrono::seconds lifetime) {
  EVP_PKEY* ca_key = X509_get0_pubkey(ca);
  if (X509_check_issued(ca, leaf) != X509_V_OK || ca_key == nullptr ||
      X509_verify(leaf, ca_key) != 1) {
    return "it was not issued by this CA";
  }
  auto info = pki::describe(leaf);
  if (!info.ok()) return "it cannot be read";
  const auto margin = std::min(kRenewServerBefore, lifetime / 3);
  if (info->not_after - std::time(nullptr) < margin.count()) return "it expires soon";
  // Issued while the clock was far ahead: useless to every peer with a right clock.
  if (info->not_before > std::time(nullptr) + kClockSlack) return "it is not valid yet";
  if (normalized_alt_names(names) != normalized_alt_names(info->subject_alt_names)) {
    return "the server's names changed";
  }
  return "";
}

// Why the link certificate must be issued again, or "" when it is fine.
std::string link_certificate_problem(X509* leaf, X509* ca, std::chrono::seconds lifetime) {
  EVP_PKEY* ca_key = X509_get0_pubkey(ca);
  if (X509_check_issued(ca, leaf) != X509_V_OK || ca_key == nullptr ||
      X509_verify(leaf, ca_key) != 1) {
    return "it was not issued by this CA";
  }
  auto info = pki::describe(leaf);
  if (!info.ok()) return "it cannot be read";
  if (info->common_name != kServerLinkCommonName || info->is_ca ||
      info->extended_key_usage != std::vector<std::string>{"clientAuth"}) {
    return "it is not a link certificate";
  }
  const auto margin = std::min(kRenewServerBefore, lifetime / 3);
  if (info->not_after - std::time(nullptr) < margin.count()) return "it expires soon";
  if (info->not_before > std::time(nullptr) + kClockSlack) return "it is not valid yet";
  return "";
}

}  // namespace

std::vector<std::string> normalized_alt_names(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (std::string name : names) {
    if (name.rfind("DNS:", 0) == 0) {
      name = name.substr(4);
    } else if (name.rfind("IP:", 0) == 0) {
      name = name.substr(3);
    }
    if (name.size() > 2 && name.front() == '[' && name.back() == ']') {
      name = name.substr(1, name.size() - 2);
    }
    if (name.empty()) continue;
    unsigned char buf[16];
    if (::inet_pton(AF_INET, name.c_str(), buf) == 1) {
      char text[INET_ADDRSTRLEN];
      ::inet_ntop(AF_INET, buf, text, sizeof text);
      out.push_back(std::string("IP:") + text);
    } else if (::inet_pton(AF_INET6, name.c_str(), buf) == 1) {
      out.push_back("IP:" + ipv6_text(buf));
    } else {
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      out.push_back("DNS:" + name);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<CertificateAuthority> CertificateAuthority::open(const CertificateAuthorityOptions& options,
                                                        OpenReport* report) {
  OpenReport local_report;
  OpenReport& rep = report ? *report : local_report;
  rep = OpenReport{};
  TETHER_TRY(ensure_directory(options.state_dir, 0700));

  CertificateAuthority ca;
  ca.state_dir_ = options.state_dir;
  ca.device_cert_lifetime_ = options.device_cert_lifetime;
  ca.server_cert_lifetime_ = options.server_cert_lifetime;
  const std::string ca_key_path = options.state_dir + "/ca.key";
  const std::string ca_cert_path = options.state_dir + "/ca.crt";

  const bool have_key = file_exists(ca_key_path);
  const bool have_cert = file_exists(ca_cert_path);
  if (!have_key && !have_cert) {
    TETHER_ASSIGN_OR_RETURN(auto key, pki::generate_p256_key());
    pki::CertificateRequest req;
    req.common_name = "Tether installation CA";
    req.usage = pki::CertUsage::kCa;
    req.lifetime = kCaLifetime;
    TETHER_ASSIGN_OR_RETURN(auto cert, pki::make_self_signed(key.get(), req));
    TETHER_ASSIGN_OR_RETURN(std::string key_pem, pki::private_key_to_pem(key.get()));
    TETHER_ASSIGN_OR_RETURN(std::string cert_pem, pki::certificate_to_pem(cert.get()));
    TETHER_TRY(write_file_atomic(ca_key_path, key_pem, 0600));
    TETHER_TRY(write_file_atomic(ca_cert_path, cert_pem, 0644));
    rep.created_ca = true;
  } else if (!have_key || !have_cert) {
    const std::string& missing = have_key ? ca_cert_path : ca_key_path;
    return make_error(Errc::kNotFound,
                      missing +
                          " is missing while its pair exists; restore it (removing both "
                          "makes a new CA, and every device would have to enroll again)");
  }

  TETHER_ASSIGN_OR_RETURN(ca.ca_key_, load_private_key(ca_key_path));
  TETHER_ASSIGN_OR_RETURN(auto ca_certs, load_certificates(ca_cert_path));
  ca.ca_cert_ = std::move(ca_certs.front());
  if (!pki::key_matches_certificate(ca.ca_key_.get(), ca.ca_cert_.get())) {
    return make_error(Errc::kCrypto, ca_key_path + " does not match " + ca_cert_path);
  }
  TETHER_ASSIGN_OR_RETURN(auto ca_info, pki::describe(ca.ca_cert_.get()));
  if (!ca_info.is_ca) {
    return make_error(Errc::kBadValue, ca_cert_path + " is not a CA certificate");
  }
  TETHER_ASSIGN_OR_RETURN(ca.ca_pem_, pki::certificate_to_pem(ca.ca_cert_.get()));
  ca.ca_fingerprint_ = ca_info.fingerprint;
  rep.clock_problem = ca_clock_problem(ca.ca_cert_.get(), ca_cert_path);
  ca.trusted_pems_.push_back(ca.ca_pem_);
  ca.trusted_fingerprints_.push_back(ca.ca_fingerprint_);

  const std::string extra_path = options.state_dir + "/trusted-cas.pem";
  if (file_exists(extra_path)) {
    TETHER_ASSIGN_OR_RETURN(ca.extra_trusted_, load_certificates(extra_path));
    for (auto& cert : ca.extra_trusted_) {
      TETHER_ASSIGN_OR_RETURN(std::string fp, pki::certificate_fingerprint(cert.get()));
      if (std::find(ca.trusted_fingerprints_.begin(), ca.trusted_fingerprints_.end(), fp) !=
          ca.trusted_fingerprints_.end()) {
        continue;
      }
      TETHER_ASSIGN_OR_RETURN(std::string pem, pki::certificate_to_pem(cert.get()));
      ca.trusted_pems_.push_back(std::move(pem));
      ca.trusted_fingerprints_.push_back(std::move(fp));
    }
    if (ca.trusted_fingerprints_.size() > 8) {
      return make_error(Errc::kTooLarge,
                        extra_path + " holds too many CAs (at most 7 besides ca.crt)");
    }
  }

  // The server's TLS identity.
  const std::string key_path = ca.server_key_path();
  const std::string cert_path = ca.server_certificate_path();
  ssl::PkeyPtr server_key;
  std::string reason;
  if (file_exists(key_path)) {
    TETHER_ASSIGN_OR_RETURN(server_key, load_private_key(key_path));
    if (file_exists(cert_path)) {
      TETHER_ASSIGN_OR_RETURN(auto chain, load_certificates(cert_path));
      if (!pki::key_matches_certificate(server_key.get(), chain.front().get())) {
        return make_error(Errc::kCrypto, key_path + " does not match " + cert_path);
      }
      reason = server_certificate_problem(chain.front().get(), ca.ca_cert_.get(),
                                          options.server_names, options.server_cert_lifetime);
      // With the clock wrong, keep the certificate there is rather than date a new one by it.
      if (!rep.clock_problem.empty()) reason.clear();
    } else {
      reason = cert_path + " was missing";
    }
  } else {
    TETHER_ASSIGN_OR_RETURN(server_key, pki::generate_p256_key());
    TETHER_ASSIGN_OR_RETURN(std::string key_pem, pki::private_key_to_pem(server_key.get()));
    TETHER_TRY(write_file_atomic(key_path, key_pem, 0600));
    reason = "there was none";
  }
  if (!reason.empty()) {
    const SplitNames names = split_names(options.server_names);
    pki::CertificateRequest req;
    req.common_name = names.dns.empty() ? "tether-server" : names.dns.front().substr(0, 64);
    req.dns_names = names.dns;
    req.ip_addresses = names.ips;
    req.usage = pki::CertUsage::kServer;
    req.lifetime = options.server_cert_lifetime;
    TETHER_ASSIGN_OR_RETURN(auto cert, pki::issue_certificate(server_key.get(), req,
                                                              ca.ca_cert_.get(), ca.ca_key_.get()));
    TETHER_ASSIGN_OR_RETURN(std::string cert_pem, pki::certificate_to_pem(cert.get()));
    TETHER_TRY(write_file_atomic(cert_path, cert_pem + ca.ca_pem_, 0644));
    rep.issued_server_certificate = true;
    rep.server_certificate_reason = reason;
  }

  TETHER_ASSIGN_OR_RETURN(rep.link_certificate_reason, ca.refresh_link_certificate());
  rep.issued_link_certificate = !rep.link_certificate_reason.empty();
  return ca;
}

Result<std::string> CertificateAuthority::refresh_link_certificate() {
  const std::string key_path = link_key_path();
  const std::string cert_path = link_certificate_path();
  ssl::PkeyPtr key;
  std::string reason;
  if (file_exists(key_path)) {
    TETHER_ASSIGN_OR_RETURN(key, load_private_key(key_path));
    if (file_exists(cert_path)) {
      TETHER_ASSIGN_OR_RETURN(auto chain, load_certificates(cert_path));
      if (!pki::key_matches_certificate(key.get(), chain.front().get())) {
        return make_error(Errc::kCrypto, key_path + " does not match " + cert_path);
      }
      reason = link_certificate_problem(chain.front().get(), ca_cert_.get(), server_cert_lifetime_);
      if (!ca_clock_problem(ca_cert_.get(), ca_certificate_path()).empty()) reason.clear();
    } else {
      reason = cert_path + " was missing";
    }
  } else {
    TETHER_ASSIGN_OR_RETURN(key, pki::generate_p256_key());
    TETHER_ASSIGN_OR_RETURN(std::string key_pem, pki::private_key_to_pem(key.get()));
    TETHER_TRY(write_file_atomic(key_path, key_pem, 0600));
    reason = "there was none";
  }
  if (reason.empty()) return reason;
  pki::CertificateRequest req;
  req.common_name = kServerLinkCommonName;
  req.usage = pki::CertUsage::kClient;
  req.lifetime = server_cert_lifetime_;
  TETHER_ASSIGN_OR_RETURN(auto cert,
                          pki::issue_certificate(key.get(), req, ca_cert_.get(), ca_key_.get()));
  TETHER_ASSIGN_OR_RETURN(std::string cert_pem, pki::certificate_to_pem(cert.get()));
  TETHER_TRY(write_file_atomic(cert_path, cert_pem + ca_pem_, 0644));
  return reason;
}

Result<IssuedCertificate> CertificateAuthority::issue_gateway_certificate(
    std::string_view csr_pem, const std::string& name, const std::string& host) const {
  auto key = pki::public_key_from_csr(csr_pem);
  if (!key.ok()) {
    return make_error(Errc::kBadValue, "bad certificate request: " + key.error().message);
  }
  const SplitNames names = split_names({host});
  if (names.dns.size() + names.ips.size() != 1) {
    return make_error(Errc::kBadValue, "a gateway certificate needs exactly one host name");
  }
  TETHER_ASSIGN_OR_RETURN(auto spki, pki::spki_sha256(key->get()));
  IssuedCertificate out;
  out.device_id = pki::to_hex(spki);
  pki::CertificateRequest req;
  req.common_name = ("tether-gateway " + name).substr(0, 64);
  req.dns_names = names.dns;
  req.ip_addresses = names.ips;
  req.usage = pki::CertUsage::kServer;
  req.lifetime = server_cert_lifetime_;
  TETHER_ASSIGN_OR_RETURN(auto cert,
                          pki::issue_certificate(key->get(), req, ca_cert_.get(), ca_key_.get()));
  TETHER_ASSIGN_OR_RETURN(auto info, pki::describe(cert.get()));
  TETHER_ASSIGN_OR_RETURN(out.certificate_pem, pki::certificate_to_pem(cert.get()));
  out.serial = info.serial;
  out.not_after = info.not_after;
  return out;
}

std::vector<X509*> CertificateAuthority::trusted() const {
  std::vector<X509*> out{ca_cert_.get()};
  for (const auto& c : extra_trusted_) out.push_back(c.get());
  return out;
}

Result<IssuedCertificate> CertificateAuthority::issue_device_certificate(
    std::string_view csr_pem) const {
  auto key = pki::public_key_from_csr(csr_pem);
  if (!key.ok()) {
    return make_error(Errc::kBadValue, "bad certificate request: " + key.error().message);
  }
  return issue_device_certificate(key->get());
}

Result<IssuedCertificate> CertificateAuthority::issue_device_certificate(
    EVP_PKEY* device_key) const {
  if (std::string clock = ca_clock_problem(ca_cert_.get(), ca_certificate_path()); !clock.empty()) {
    return make_error(Errc::kUnavailable, "cannot issue a device certificate now: " + clock);
  }
  TETHER_ASSIGN_OR_RETURN(auto spki, pki::spki_sha256(device_key));
  IssuedCertificate out;
  out.device_id = pki::to_hex(spki);
  pki::CertificateRequest req;
  req.common_name = out.device_id;
  req.usage = pki::CertUsage::kClient;
  req.lifetime = device_cert_lifetime_;
  TETHER_ASSIGN_OR_RETURN(auto cert,
                          pki::issue_certificate(device_key, req, ca_cert_.get(), ca_key_.get()));
  TETHER_ASSIGN_OR_RETURN(auto info, pki::describe(cert.get()));
  TETHER_ASSIGN_OR_RETURN(out.certificate_pem, pki::certificate_to_pem(cert.get()));
  out.serial = info.serial;
  out.not_after = info.not_after;
  return out;
}

}  // namespace tether::server
