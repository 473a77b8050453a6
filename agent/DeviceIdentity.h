// The device's own identity in its state directory: the EC P-256 key (never leaves the
// device), its certificate (self-signed until enrollment, then issued by the installation
// CA), and the device id (SHA-256 of the key's SPKI). Loading refuses, naming the file, a key
// that others can read, files that are corrupt, and a certificate that is not for the key.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "agent/AgentConfig.h"
#include "common/Result.h"
#include "platform/OpenSsl.h"

namespace tether::agent {

class DeviceIdentity {
 public:
  // Loads the identity; kNotFound when neither file exists yet.
  [[nodiscard]] static Result<DeviceIdentity> load(const StatePaths& paths);
  // Loads it, or on first start makes a key and a self-signed certificate (written
  // atomically, key 0600, directory 0700). A key whose certificate is missing on a device
  // not enrolled (a first start cut short) gets a new self-signed certificate.
  [[nodiscard]] static Result<DeviceIdentity> load_or_create(const StatePaths& paths);
  // A new identity in memory only (enrollment writes it once the server has accepted it).
  [[nodiscard]] static Result<DeviceIdentity> generate();

  [[nodiscard]] EVP_PKEY* key() const noexcept { return key_.get(); }
  [[nodiscard]] X509* certificate() const noexcept { return cert_.get(); }
  [[nodiscard]] const std::string& device_id() const noexcept { return device_id_; }
  [[nodiscard]] bool self_signed() const;

  // Writes the key (if not on disk yet) and `cert` atomically, then adopts the certificate.
  [[nodiscard]] Status store(const StatePaths& paths, ssl::X509Ptr cert);

  [[nodiscard]] Result<std::string> certificate_pem() const;
  [[nodiscard]] Result<std::string> key_pem() const;

 private:
  // `key` with a fresh self-signed certificate.
  [[nodiscard]] static Result<DeviceIdentity> self_signed_for(ssl::PkeyPtr key);
  DeviceIdentity(ssl::PkeyPtr key, ssl::X509Ptr cert, std::string device_id)
      : key_(std::move(key)), cert_(std::move(cert)), device_id_(std::move(device_id)) {}
  ssl::PkeyPtr key_;
  ssl::X509Ptr cert_;
  std::string device_id_;
};

// enrollment.json: present once `register` has succeeded.
struct EnrollmentRecord {
  std::string server_url;
  std::string device_id;
  std::string ca_fingerprint;  // the CA the token named
  std::int64_t enrolled_at = 0;
};
[[nodiscard]] Result<std::optional<EnrollmentRecord>> load_enrollment(const StatePaths& paths);
[[nodiscard]] Status save_enrollment(const StatePaths& paths, const EnrollmentRecord& record);

// trust.json: the CA fingerprints this device trusts (a set, so the CA can be rotated).
[[nodiscard]] Result<std::vector<std::string>> load_trust(const StatePaths& paths);
[[nodiscard]] Status save_trust(const StatePaths& paths,
                                const std::vector<std::string>& fingerprints);

}  // namespace tether::agent
