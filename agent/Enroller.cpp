#include "agent/Enroller.h"

#include <ctime>

#include "agent/DeviceIdentity.h"
#include "agent/SystemInfo.h"
#include "common/FileIo.h"
#include "platform/HttpsClient.h"
#include "platform/Pki.h"
#include "protocol/EnrollmentToken.h"
#include "protocol/JsonFieldReader.h"
#include "protocol/LimitedJsonParser.h"

namespace tether::agent {
namespace {

using json = nlohmann::json;

// The server's {"error": {"code", "message"}} body, in words.
std::string server_error(const HttpsResponse& resp) {
  auto doc = protocol::parse_limited_json(resp.body, protocol::JsonLimits{});
  if (doc.ok() && doc->is_object() && doc->contains("error") && (*doc)["error"].is_object() &&
      (*doc)["error"].contains("message") && (*doc)["error"]["message"].is_string()) {
    return (*doc)["error"]["message"].get<std::string>();
  }
  return "HTTP " + std::to_string(resp.status);
}

// A refused enrollment leaves nothing behind: removes the key written for it, unless disarmed.
struct KeyWrittenForThisAttempt {
  std::string path;
  KeyWrittenForThisAttempt() = default;
  KeyWrittenForThisAttempt(const KeyWrittenForThisAttempt&) = delete;
  KeyWrittenForThisAttempt& operator=(const KeyWrittenForThisAttempt&) = delete;
  ~KeyWrittenForThisAttempt() {
    if (!path.empty()) (void)remove_file(path);
  }
};

}  // namespace

Result<EnrollOutcome> enroll(const StatePaths& paths, const EnrollOptions& options) {
  TETHER_ASSIGN_OR_RETURN(protocol::EnrollmentToken token,
                          protocol::parse_enrollment_token(options.token));
  TETHER_ASSIGN_OR_RETURN(protocol::ServerUrl url, protocol::parse_server_url(token.server_url));

  TETHER_ASSIGN_OR_RETURN(auto existing, load_enrollment(paths));
  if (existing && !options.force) {
    return make_error(Errc::kAlreadyExists,
                      "this device is already enrolled with " + existing->server_url +
                          " as device " + existing->device_id + "; use --force to enroll again");
  }

  // Keep an existing key (the device id must not change).
  auto identity = DeviceIdentity::load(paths);
  KeyWrittenForThisAttempt new_key;
  if (!identity.ok()) {
    if (identity.error().code != Errc::kNotFound) return identity.error();
    if (file_exists(paths.key)) {
      // A key without its certificate, from an attempt cut short: keep the key.
      identity = DeviceIdentity::load_or_create(paths);
      if (!identity.ok()) return identity.error();
    } else {
      identity = DeviceIdentity::generate();
      if (!identity.ok()) return identity.error();
      // The key is on disk before the server learns of it: a full disk fails here, before
      // the token is spent, and never leaves the server with a device whose key is lost.
      TETHER_TRY(ensure_directory(paths.dir, 0700));
      TETHER_ASSIGN_OR_RETURN(std::string key_text, identity->key_pem());
      TETHER_TRY(write_file_atomic(paths.key, key_text, 0600));
      new_key.path = paths.key;
    }
  }
  TETHER_ASSIGN_OR_RETURN(std::string csr,
                          pki::make_csr_pem(identity->key(), identity->device_id()));

  const json body = {{"secret", token.secret},
                     {"csr_pem", csr},
                     {"hostname", read_hostname()},
                     {"macs", read_macs()}};
  HttpsRequest request;
  request.method = "POST";
  request.path = "/api/v1/enroll";
  request.headers = {{"Content-Type", "application/json"}};
  request.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  TlsTrust trust;
  trust.pinned_ca_fingerprint = token.ca_fingerprint;
  auto response = https_request(url.host, url.port, trust, request);
  if (!response.ok()) {
    return response.error().context("cannot enroll with " + url.to_string());
  }
  if (response->status != 201 && response->status != 200) {
    Errc code = Errc::kUnavailable;
    if (response->status == 401) code = Errc::kUnauthenticated;
    if (response->status == 403) code = Errc::kPermissionDenied;
    if (response->status == 400) code = Errc::kBadValue;
    return make_error(code, "the server refused the enrollment: " + server_error(*response));
  }

  new_key.path.clear();  // the server has accepted this key: it stays whatever happens next
  auto doc = protocol::parse_limited_json(response->body, protocol::JsonLimits{});
  if (!doc.ok()) return doc.error().context("the server's answer is malformed");
  protocol::JsonFieldReader f(*doc, "answer");
  const std::string device_id = f.str("device_id", 64, protocol::StringKind::kHex64);
  const std::string cert_pem = f.str("certificate_pem", 16 * 1024, protocol::StringKind::kText);
  const auto ca_pems =
      f.str_array("ca_certificates_pem", 8, 16 * 1024, protocol::StringKind::kText);
  const std::string server_url = f.opt_str("server_url", 512).value_or(url.to_string());
  if (auto ok = f.finish(); !ok.ok()) return ok.error().context("the server's answer");

  if (device_id != identity->device_id()) {
    return make_error(Errc::kBadValue, "the server assigned device id " + device_id +
                                           " but this device's key gives " + identity->device_id());
  }
  TETHER_ASSIGN_OR_RETURN(auto cert, pki::certificate_from_pem(cert_pem));
  if (!pki::key_matches_certificate(identity->key(), cert.get())) {
    return make_error(Errc::kBadValue, "the issued certificate is not for this device's key");
  }
  std::vector<ssl::X509Ptr> cas;
  std::vector<X509*> presented{cert.get()};
  for (const auto& pem : ca_pems) {
    TETHER_ASSIGN_OR_RETURN(auto ca, pki::certificate_from_pem(pem));
    presented.push_back(ca.get());
    cas.push_back(std::move(ca));
  }
  auto anchor = pki::verify_pinned_chain(cert.get(), presented, {token.ca_fingerprint},
                                         pki::CertUsage::kClient);
  if (!anchor.ok()) return anchor.error().context("the issued certificate does not check out");
  auto canonical = protocol::parse_server_url(server_url);
  if (!canonical.ok()) return canonical.error().context("the server's answer");

  // Now, and only now, the state directory changes: key (if new), certificate, trust set,
  // and last the enrollment record that marks the device as enrolled.
  TETHER_TRY(identity->store(paths, std::move(cert)));
  TETHER_TRY(save_trust(paths, {token.ca_fingerprint}));
  EnrollmentRecord record;
  record.server_url = canonical->to_string();
  record.device_id = device_id;
  record.ca_fingerprint = token.ca_fingerprint;
  record.enrolled_at = std::time(nullptr);
  TETHER_TRY(save_enrollment(paths, record));
  return EnrollOutcome{device_id, record.server_url};
}

}  // namespace tether::agent
