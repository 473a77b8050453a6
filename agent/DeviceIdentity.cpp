#include "agent/DeviceIdentity.h"

#include <openssl/x509v3.h>

#include <algorithm>

#include "common/FileIo.h"
#include "platform/Pki.h"
#include "protocol/JsonFieldReader.h"
#include "protocol/LimitedJsonParser.h"

namespace tether::agent {
namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxStateFile = 64 * 1024;

Result<json> read_json_file(const std::string& path) {
  TETHER_ASSIGN_OR_RETURN(std::string text, read_file(path, kMaxStateFile, /*no_follow=*/true));
  auto doc = protocol::parse_limited_json(text, protocol::JsonLimits{});
  if (!doc.ok()) return doc.error().context(path + " is corrupt");
  if (!doc->is_object()) return make_error(Errc::kBadValue, path + " is corrupt: not an object");
  return doc;
}

}  // namespace

Result<DeviceIdentity> DeviceIdentity::load(const StatePaths& paths) {
  const bool have_key = file_exists(paths.key);
  const bool have_cert = file_exists(paths.cert);
  if (!have_key && !have_cert) {
    return make_error(Errc::kNotFound, "no device identity in " + paths.dir + " yet");
  }
  if (!have_key) {
    return make_error(Errc::kNotFound, paths.key + " is missing but " + paths.cert +
                                           " exists; refusing to make a new identity over it");
  }
  TETHER_TRY(check_private_file(paths.key));
  TETHER_ASSIGN_OR_RETURN(std::string key_pem, read_file(paths.key, kMaxStateFile, true));
  auto key = pki::private_key_from_pem(key_pem);
  if (!key.ok()) return make_error(Errc::kBadValue, paths.key + " is corrupt: not a private key");
  TETHER_ASSIGN_OR_RETURN(auto spki, pki::spki_sha256(key->get()));
  const std::string device_id = pki::to_hex(spki);

  if (!have_cert) {
    return make_error(Errc::kNotFound, paths.cert + " is missing");
  }
  TETHER_ASSIGN_OR_RETURN(std::string cert_pem, read_file(paths.cert, kMaxStateFile, true));
  auto cert = pki::certificate_from_pem(cert_pem);
  if (!cert.ok()) return make_error(Errc::kBadValue, paths.cert + " is corrupt: not a certificate");
  if (!pki::key_matches_certificate(key->get(), cert->get())) {
    return make_error(Errc::kBadValue, paths.cert + " does not belong to the key in " + paths.key);
  }
  return DeviceIdentity(std::move(key).value(), std::move(cert).value(), device_id);
}

Result<DeviceIdentity> DeviceIdentity::generate() {
  TETHER_ASSIGN_OR_RETURN(auto key, pki::generate_p256_key());
  return self_signed_for(std::move(key));
}

Result<DeviceIdentity> DeviceIdentity::self_signed_for(ssl::PkeyPtr key) {
  TETHER_ASSIGN_OR_RETURN(auto spki, pki::spki_sha256(key.get()));
  const std::string device_id = pki::to_hex(spki);
  pki::CertificateRequest req;
  // The CN field holds at most 64 bytes: exactly a device id.
  req.common_name = device_id;
  req.usage = pki::CertUsage::kClient;
  req.lifetime = std::chrono::hours(24 * 365 * 10);
  TETHER_ASSIGN_OR_RETURN(auto cert, pki::make_self_signed(key.get(), req));
  return DeviceIdentity(std::move(key), std::move(cert), device_id);
}

Result<DeviceIdentity> DeviceIdentity::load_or_create(const StatePaths& paths) {
  TETHER_TRY(ensure_directory(paths.dir, 0700));
  auto loaded = load(paths);
  if (loaded.ok()) return loaded;
  // A good key without a certificate on a device never enrolled: the first start (or a
  // `register` on a full disk) was cut between writing the two. The key is the identity;
  // its self-signed certificate can be made again.
  if (file_exists(paths.key) && !file_exists(paths.cert) && !file_exists(paths.enrollment)) {
    TETHER_TRY(check_private_file(paths.key));
    TETHER_ASSIGN_OR_RETURN(std::string key_text, read_file(paths.key, kMaxStateFile, true));
    auto key = pki::private_key_from_pem(key_text);
    if (!key.ok()) return make_error(Errc::kBadValue, paths.key + " is corrupt: not a private key");
    TETHER_ASSIGN_OR_RETURN(DeviceIdentity kept, self_signed_for(std::move(key).value()));
    TETHER_TRY(kept.store(paths, ssl::X509Ptr(X509_dup(kept.certificate()))));
    return kept;
  }
  // Only "nothing there at all" makes a new identity; anything else keeps the old one safe.
  if (file_exists(paths.key) || file_exists(paths.cert)) return loaded.error();
  TETHER_ASSIGN_OR_RETURN(DeviceIdentity fresh, generate());
  ssl::X509Ptr cert(X509_dup(fresh.certificate()));
  TETHER_TRY(fresh.store(paths, std::move(cert)));
  return fresh;
}

bool DeviceIdentity::self_signed() const {
  return X509_self_signed(cert_.get(), 1) == 1;
}

Status DeviceIdentity::store(const StatePaths& paths, ssl::X509Ptr cert) {
  if (!pki::key_matches_certificate(key_.get(), cert.get())) {
    return make_error(Errc::kBadValue, "the certificate is not for this device's key");
  }
  TETHER_TRY(ensure_directory(paths.dir, 0700));
  if (!file_exists(paths.key)) {
    TETHER_ASSIGN_OR_RETURN(std::string key_text, key_pem());
    TETHER_TRY(write_file_atomic(paths.key, key_text, 0600));
  }
  TETHER_ASSIGN_OR_RETURN(std::string pem, pki::certificate_to_pem(cert.get()));
  TETHER_TRY(write_file_atomic(paths.cert, pem, 0644));
  cert_ = std::move(cert);
  return {};
}

Result<std::string> DeviceIdentity::certificate_pem() const {
  return pki::certificate_to_pem(cert_.get());
}

Result<std::string> DeviceIdentity::key_pem() const {
  return pki::private_key_to_pem(key_.get());
}

Result<std::optional<EnrollmentRecord>> load_enrollment(const StatePaths& paths) {
  if (!file_exists(paths.enrollment)) return std::optional<EnrollmentRecord>{};
  TETHER_ASSIGN_OR_RETURN(json doc, read_json_file(paths.enrollment));
  protocol::JsonFieldReader f(doc, paths.enrollment);
  EnrollmentRecord r;
  r.server_url = f.str("server_url", 512);
  r.device_id = f.str("device_id", 64, protocol::StringKind::kHex64);
  r.ca_fingerprint = f.str("ca_fingerprint", 64, protocol::StringKind::kHex64);
  r.enrolled_at = f.integer("enrolled_at", 0, std::int64_t{1} << 40);
  auto ok = f.finish();
  if (!ok.ok()) return ok.error().context(paths.enrollment + " is corrupt");
  return std::optional(std::move(r));
}

Status save_enrollment(const StatePaths& paths, const EnrollmentRecord& r) {
  const json doc = {{"server_url", r.server_url},
                    {"device_id", r.device_id},
                    {"ca_fingerprint", r.ca_fingerprint},
                    {"enrolled_at", r.enrolled_at}};
  return write_file_atomic(paths.enrollment, doc.dump(2) + "\n", 0644);
}

Result<std::vector<std::string>> load_trust(const StatePaths& paths) {
  if (!file_exists(paths.trust)) return std::vector<std::string>{};
  TETHER_ASSIGN_OR_RETURN(json doc, read_json_file(paths.trust));
  protocol::JsonFieldReader f(doc, paths.trust);
  auto fps = f.str_array("ca_fingerprints", 16, 64, protocol::StringKind::kHex64, true);
  auto ok = f.finish();
  if (!ok.ok()) return ok.error().context(paths.trust + " is corrupt");
  if (fps.empty()) return make_error(Errc::kBadValue, paths.trust + " trusts no CA");
  return fps;
}

Status save_trust(const StatePaths& paths, const std::vector<std::string>& fingerprints) {
  std::vector<std::string> sorted = fingerprints;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  const json doc = {{"ca_fingerprints", sorted}};
  return write_file_atomic(paths.trust, doc.dump(2) + "\n", 0644);
}

}  // namespace tether::agent
