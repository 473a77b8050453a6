#include "server/GatewayIdentity.h"

#include <algorithm>
#include <ctime>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/FileIo.h"
#include "platform/HttpsClient.h"
#include "platform/Pki.h"
#include "protocol/EnrollmentToken.h"
#include "protocol/GatewayJoinToken.h"
#include "protocol/JsonFieldReader.h"
#include "protocol/LimitedJsonParser.h"
#include "server/CertificateAuthority.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using protocol::JsonFieldReader;
using protocol::StringKind;

constexpr std::size_t kMaxPemFile = 64 * 1024;
constexpr const char* kNotJoinedMessage =
    "this gateway has not joined yet: run tether-gateway --join TOKEN";

// The server's {"error": {"code", "message"}} body, in words.
std::string server_error(const HttpsResponse& resp) {
  auto doc = protocol::parse_limited_json(resp.body, protocol::JsonLimits{});
  if (doc.ok() && doc->is_object() && doc->contains("error") && (*doc)["error"].is_object() &&
      (*doc)["error"].contains("message") && (*doc)["error"]["message"].is_string()) {
    return (*doc)["error"]["message"].get<std::string>();
  }
  return "HTTP " + std::to_string(resp.status);
}

Errc errc_for_status(int status) {
  switch (status) {
    case 400: return Errc::kBadValue;
    case 401: return Errc::kUnauthenticated;
    case 403: return Errc::kPermissionDenied;
    case 404: return Errc::kNotFound;
    case 409: return Errc::kConflict;
    default: return Errc::kUnavailable;
  }
}

}  // namespace

GatewayIdentityPaths::GatewayIdentityPaths(std::string state_dir)
    : dir(std::move(state_dir)),
      key(dir + "/gateway.key"),
      certificate(dir + "/gateway.crt"),
      ca_bundle(dir + "/ca.crt"),
      record(dir + "/gateway.json") {}

Result<GatewayIdentity> GatewayIdentity::load(const std::string& state_dir) {
  GatewayIdentity id;
  id.paths = GatewayIdentityPaths(state_dir);
  const auto& paths = id.paths;
  if (!file_exists(paths.record)) return make_error(Errc::kNotFound, kNotJoinedMessage);
  TETHER_ASSIGN_OR_RETURN(std::string text, read_file(paths.record, 64 * 1024, true));
  auto doc = protocol::parse_limited_json(text, protocol::JsonLimits{});
  if (!doc.ok()) return doc.error().context(paths.record + " is corrupt");
  if (!doc->is_object()) return make_error(Errc::kBadValue, paths.record + " is corrupt");
  JsonFieldReader f(*doc, paths.record);
  id.name = f.str("name", protocol::kMaxGatewayNameLength, StringKind::kToken);
  id.server_url = f.str("server_url", 300);
  id.gateway_url = f.str("gateway_url", 300);
  id.ca_fingerprint = f.str("ca_fingerprint", 64, StringKind::kHex64);
  id.joined_at = f.integer("joined_at", 0, INT64_MAX);
  if (auto ok = f.finish(); !ok.ok()) return ok.error().context(paths.record + " is corrupt");

  for (const auto* path : {&paths.key, &paths.certificate, &paths.ca_bundle}) {
    if (!file_exists(*path)) {
      return make_error(Errc::kNotFound, *path + " is missing; join again (remove " + paths.record +
                                             " and run tether-gateway --join with a new token)");
    }
  }
  TETHER_TRY(check_private_file(paths.key));
  TETHER_ASSIGN_OR_RETURN(std::string key_pem, read_file(paths.key, kMaxPemFile, true));
  auto key = pki::private_key_from_pem(key_pem);
  if (!key.ok())
    return make_error(Errc::kCrypto, paths.key + " is corrupt: " + key.error().message);
  id.key = std::move(key).value();
  TETHER_ASSIGN_OR_RETURN(std::string chain_pem, read_file(paths.certificate, kMaxPemFile, true));
  auto chain = pki::certificates_from_pem(chain_pem);
  if (!chain.ok()) {
    return make_error(Errc::kCrypto, paths.certificate + " is corrupt: " + chain.error().message);
  }
  if (!pki::key_matches_certificate(id.key.get(), chain->front().get())) {
    return make_error(Errc::kCrypto, paths.key + " does not match " + paths.certificate);
  }
  TETHER_ASSIGN_OR_RETURN(std::string bundle, read_file(paths.ca_bundle, kMaxPemFile, true));
  auto cas = pki::certificates_from_pem(bundle);
  if (!cas.ok()) {
    return make_error(Errc::kCrypto, paths.ca_bundle + " is corrupt: " + cas.error().message);
  }
  return id;
}

Result<GatewayIdentity> join_gateway(const std::string& state_dir, const std::string& token_text,
                                     std::chrono::milliseconds timeout) {
  TETHER_ASSIGN_OR_RETURN(protocol::GatewayJoinToken token,
                          protocol::parse_gateway_join_token(token_text));
  TETHER_ASSIGN_OR_RETURN(protocol::ServerUrl url, protocol::parse_server_url(token.server_url));
  const GatewayIdentityPaths paths(state_dir);
  if (file_exists(paths.record)) {
    auto existing = GatewayIdentity::load(state_dir);
    const std::string as = existing.ok() ? " as " + existing->name : "";
    return make_error(Errc::kAlreadyExists, "this gateway has joined already" + as + " (" +
                                                paths.record +
                                                "); remove its state directory to join again");
  }
  TETHER_TRY(ensure_directory(state_dir, 0700));

  // The key stays in memory until the server has answered with a certificate that checks out.
  TETHER_ASSIGN_OR_RETURN(auto key, pki::generate_p256_key());
  TETHER_ASSIGN_OR_RETURN(std::string csr,
                          pki::make_csr_pem(key.get(), "tether-gateway " + token.name));
  const json body = {{"secret", token.secret}, {"name", token.name}, {"csr", csr}};
  HttpsRequest request;
  request.method = "POST";
  request.path = "/api/v1/gateways/join";
  request.headers = {{"Content-Type", "application/json"}};
  request.body = body.dump();
  TlsTrust trust;
  trust.pinned_ca_fingerprint = token.ca_fingerprint;
  HttpsOptions options;
  options.timeout = timeout;
  options.max_response_bytes = 256 * 1024;
  auto response = https_request(url.host, url.port, trust, request, options);
  if (!response.ok()) return response.error().context("cannot join through " + url.to_string());
  if (response->status != 200) {
    return make_error(errc_for_status(response->status),
                      "the server refused the join: " + server_error(*response));
  }

  auto doc = protocol::parse_limited_json(response->body, protocol::JsonLimits{});
  if (!doc.ok()) return doc.error().context("the server's answer is malformed");
  if (!doc->is_object()) return make_error(Errc::kBadValue, "the server's answer is malformed");
  JsonFieldReader f(*doc, "answer");
  const std::string name = f.str("name", protocol::kMaxGatewayNameLength, StringKind::kToken);
  const std::string cert_pem = f.str("certificate", 16 * 1024, StringKind::kText);
  const auto ca_pems = f.str_array("ca_certificates", 8, 16 * 1024, StringKind::kText, true);
  const std::string gateway_url_text = f.str("gateway_url", 300);
  if (auto ok = f.finish(); !ok.ok()) return ok.error().context("the server's answer");
  if (name != token.name) {
    return make_error(Errc::kBadValue, "the server answered for gateway \"" + name +
                                           "\" instead of \"" + token.name + "\"");
  }
  TETHER_ASSIGN_OR_RETURN(protocol::ServerUrl gateway_url,
                          protocol::parse_server_url(gateway_url_text));

  TETHER_ASSIGN_OR_RETURN(auto cert, pki::certificate_from_pem(cert_pem));
  if (!pki::key_matches_certificate(key.get(), cert.get())) {
    return make_error(Errc::kBadValue, "the issued certificate is not for this gateway's key");
  }
  std::vector<ssl::X509Ptr> cas;
  std::vector<X509*> presented{cert.get()};
  std::string issuer_pem;
  std::string bundle;
  for (const auto& pem : ca_pems) {
    TETHER_ASSIGN_OR_RETURN(auto ca, pki::certificate_from_pem(pem));
    TETHER_ASSIGN_OR_RETURN(std::string fp, pki::certificate_fingerprint(ca.get()));
    TETHER_ASSIGN_OR_RETURN(std::string ca_pem, pki::certificate_to_pem(ca.get()));
    if (fp == token.ca_fingerprint) issuer_pem = ca_pem;
    bundle += ca_pem;
    presented.push_back(ca.get());
    cas.push_back(std::move(ca));
  }
  if (issuer_pem.empty()) {
    return make_error(Errc::kBadValue, "the server's CA list lacks the CA the token names");
  }
  auto anchor = pki::verify_pinned_chain(cert.get(), presented, {token.ca_fingerprint},
                                         pki::CertUsage::kServer);
  if (!anchor.ok()) return anchor.error().context("the issued certificate does not check out");
  TETHER_ASSIGN_OR_RETURN(auto info, pki::describe(cert.get()));
  // Devices check the gateway's host against this certificate: a mismatch would only show
  // later, as every device refusing the gateway.
  const auto wanted = normalized_alt_names({gateway_url.host});
  const auto named = normalized_alt_names(info.subject_alt_names);
  if (wanted.size() != 1 || std::find(named.begin(), named.end(), wanted.front()) == named.end()) {
    return make_error(Errc::kBadValue, "the issued certificate does not name the gateway's host " +
                                           gateway_url.host);
  }

  // Now, and only now, the state directory changes; the record last, as it marks the join.
  TETHER_ASSIGN_OR_RETURN(std::string key_pem, pki::private_key_to_pem(key.get()));
  TETHER_ASSIGN_OR_RETURN(std::string leaf_pem, pki::certificate_to_pem(cert.get()));
  TETHER_TRY(write_file_atomic(paths.key, key_pem, 0600));
  TETHER_TRY(write_file_atomic(paths.certificate, leaf_pem + issuer_pem, 0644));
  TETHER_TRY(write_file_atomic(paths.ca_bundle, bundle, 0644));
  const json record = {{"name", name},
                       {"server_url", token.server_url},
                       {"gateway_url", gateway_url.to_string()},
                       {"ca_fingerprint", token.ca_fingerprint},
                       {"joined_at", static_cast<std::int64_t>(std::time(nullptr))}};
  TETHER_TRY(write_file_atomic(paths.record, record.dump(2) + "\n", 0644));
  return GatewayIdentity::load(state_dir);
}

}  // namespace tether::server
