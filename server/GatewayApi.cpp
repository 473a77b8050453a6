#include "server/GatewayApi.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <ctime>
#include <span>

#include "common/Base64.h"
#include "common/Log.h"
#include "platform/Pki.h"
#include "protocol/EnrollmentToken.h"
#include "protocol/GatewayJoinToken.h"
#include "protocol/JsonFieldReader.h"
#include "protocol/LimitedJsonParser.h"
#include "server/EnrollmentService.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using protocol::JsonFieldReader;
using protocol::StringKind;

constexpr std::int64_t kMinTtl = 1;
constexpr std::int64_t kMaxTtl = 30 * 86400;

HttpResponse from_error(const Error& error) {
  return error_response(http_status_for(error.code), error.code, error.message);
}

Result<json> parse_body(const HttpRequest& request) {
  if (request.body.empty()) return json::object();
  protocol::JsonLimits limits;
  limits.max_bytes = 64 * 1024;
  limits.max_depth = 4;
  limits.max_string_bytes = 16 * 1024;
  limits.max_key_bytes = 64;
  limits.max_array_items = 16;
  limits.max_object_members = 16;
  limits.max_values = 256;
  TETHER_ASSIGN_OR_RETURN(json doc, protocol::parse_limited_json(request.body, limits));
  if (!doc.is_object()) {
    return make_error(Errc::kWrongType, "the request body must be a JSON object, not " +
                                            std::string(protocol::json_type_name(doc)));
  }
  return doc;
}

HttpResponse method_not_allowed(const std::string& allowed) {
  HttpResponse r = error_response(405, Errc::kInvalidArgument,
                                  "method not allowed here (allowed: " + allowed + ")");
  r.headers.emplace_back("Allow", allowed);
  return r;
}

HttpResponse bad_name() {
  return error_response(400, Errc::kBadValue, "name: a gateway name is 1-32 of a-z, 0-9 and '-'");
}

}  // namespace

GatewayApi::GatewayApi(Store& store, const CertificateAuthority& ca, GatewayApiSettings settings,
                       WallClock wall_clock)
    : store_(store),
      ca_(ca),
      settings_(std::move(settings)),
      wall_clock_(std::move(wall_clock)),
      limiter_(settings_.join_rate_per_minute) {}

bool GatewayApi::owns(const std::vector<std::string>& parts) {
  return !parts.empty() && parts[0] == "gateways" && parts.size() <= 2;
}

bool GatewayApi::needs_admin(const std::vector<std::string>& parts) {
  return !(parts.size() == 2 && parts[1] == "join");
}

std::int64_t GatewayApi::now() const {
  return wall_clock_ ? wall_clock_() : static_cast<std::int64_t>(std::time(nullptr));
}

void GatewayApi::changed() const {
  if (on_changed_) on_changed_();
}

HttpResponse GatewayApi::route(const HttpRequest& request, const std::vector<std::string>& parts) {
  const std::string& method = request.method;
  if (parts.size() == 1) {
    if (method == "GET") return list();
    if (method == "POST") return add(request);
    return method_not_allowed("GET, POST");
  }
  if (parts[1] == "join") {
    if (method != "POST") return method_not_allowed("POST");
    return join(request);
  }
  if (method != "DELETE") return method_not_allowed("DELETE");
  return remove(parts[1]);
}

HttpResponse GatewayApi::add(const HttpRequest& request) {
  auto body = parse_body(request);
  if (!body.ok()) return from_error(body.error());
  JsonFieldReader f(*body, "");
  const std::string name = f.str("name", 64, StringKind::kSingleLine);
  const std::string url_text = f.str("url", 300, StringKind::kSingleLine);
  const auto ttl = f.opt_integer("ttl", kMinTtl, kMaxTtl);
  const auto ttl_s = f.opt_integer("ttl_s", kMinTtl, kMaxTtl);
  if (auto status = f.finish(); !status.ok()) return from_error(status.error());
  if (!protocol::valid_gateway_name(name)) return bad_name();
  auto url = protocol::parse_server_url(url_text);
  if (!url.ok()) return error_response(400, Errc::kBadValue, "url: " + url.error().message);
  const std::int64_t lifetime = ttl_s ? *ttl_s : ttl ? *ttl : settings_.default_join_ttl.count();

  std::vector<std::uint8_t> secret(protocol::kGatewayJoinSecretBytes);
  if (RAND_bytes(secret.data(), static_cast<int>(secret.size())) != 1) {
    return error_response(500, Errc::kCrypto, "no randomness available");
  }
  const std::string secret_text = base64url_encode(secret);
  GatewayRecord record;
  record.name = name;
  record.url = url->to_string();
  record.join_secret_sha256 = sha256_hex(secret_text);
  record.created_at = now();
  record.join_expires_at = record.created_at + lifetime;
  auto inserted = store_.insert_gateway(record);
  if (!inserted.ok()) return from_error(inserted.error());
  if (!*inserted) {
    return error_response(409, Errc::kAlreadyExists,
                          "a gateway named " + name + " exists already (gateway remove " + name +
                              " first to add it again)");
  }
  log::notice("gateway " + name + " added (" + record.url + "); waiting for it to join");
  changed();
  const std::string token = protocol::format_gateway_join_token(
      protocol::GatewayJoinToken{name, settings_.server_url, ca_.ca_fingerprint(), secret_text});
  return json_response(201, {{"name", name},
                             {"url", record.url},
                             {"token", token},
                             {"expires_at", record.join_expires_at}});
}

HttpResponse GatewayApi::list() {
  auto gateways = store_.list_gateways();
  if (!gateways.ok()) return from_error(gateways.error());
  json out = json::array();
  for (const auto& g : *gateways) {
    const bool joined = g.joined_at != 0;
    GatewayLinkInfo info;
    if (joined && link_info_) info = link_info_(g.name);
    out.push_back({{"name", g.name},
                   {"url", g.url},
                   {"joined", joined},
                   {"joined_at", joined ? json(g.joined_at) : json(nullptr)},
                   {"created_at", g.created_at},
                   {"join_expires_at", joined ? json(nullptr) : json(g.join_expires_at)},
                   {"cert_fingerprint", joined ? json(g.cert_fingerprint) : json(nullptr)},
                   {"link", joined ? info.state : std::string("not joined")},
                   {"devices", joined ? info.devices : 0}});
  }
  return json_response(200, {{"gateways", out}});
}

HttpResponse GatewayApi::remove(const std::string& name) {
  if (!protocol::valid_gateway_name(name)) {
    return error_response(404, Errc::kNotFound, "no gateway " + name.substr(0, 32));
  }
  auto removed = store_.remove_gateway(name);
  if (!removed.ok()) return from_error(removed.error());
  if (!*removed) return error_response(404, Errc::kNotFound, "no gateway " + name);
  log::notice("gateway " + name + " removed");
  changed();
  return json_response(200, {{"removed", name}});
}

HttpResponse GatewayApi::join(const HttpRequest& request) {
  if (auto wait = limiter_.take(request.peer_address, RateLimiter::Clock::now())) {
    HttpResponse r = error_response(429, Errc::kUnavailable,
                                    "too many join attempts from this address; retry in " +
                                        std::to_string(wait->count()) + " s");
    r.headers.emplace_back("Retry-After", std::to_string(wait->count()));
    return r;
  }
  auto body = parse_body(request);
  if (!body.ok()) return from_error(body.error());
  JsonFieldReader f(*body, "");
  const std::string secret = f.str("secret", 64, StringKind::kToken);
  const std::string name = f.str("name", 64, StringKind::kSingleLine);
  const std::string csr = f.str("csr", 16 * 1024, StringKind::kText);
  if (auto status = f.finish(); !status.ok()) return from_error(status.error());
  if (!protocol::valid_gateway_name(name)) return bad_name();
  auto refuse = [&](int status, Errc code, const std::string& message) {
    log::notice("gateway join as " + name + " from " + request.peer_address +
                " refused: " + message);
    return error_response(status, code, message);
  };

  auto found = store_.find_gateway(name);
  if (!found.ok()) return from_error(found.error());
  if (!*found) return refuse(401, Errc::kUnauthenticated, kUnknownJoinTokenMessage);
  const GatewayRecord& gateway = **found;
  if (gateway.joined_at != 0) return refuse(409, Errc::kConflict, kAlreadyJoinedMessage);
  const std::string presented = sha256_hex(secret);
  if (gateway.join_secret_sha256.size() != presented.size() ||
      CRYPTO_memcmp(gateway.join_secret_sha256.data(), presented.data(), presented.size()) != 0) {
    return refuse(401, Errc::kUnauthenticated, kUnknownJoinTokenMessage);
  }
  const std::int64_t at = now();
  if (gateway.join_expires_at <= at) {
    return refuse(401, Errc::kUnauthenticated, kExpiredJoinTokenMessage);
  }
  auto url = protocol::parse_server_url(gateway.url);
  if (!url.ok()) return from_error(url.error());
  auto cert = ca_.issue_gateway_certificate(csr, name, url->host);
  if (!cert.ok()) return refuse(400, Errc::kBadValue, cert.error().message);
  auto parsed = pki::certificate_from_pem(cert->certificate_pem);
  if (!parsed.ok()) return from_error(parsed.error());
  auto fingerprint = pki::certificate_fingerprint(parsed->get());
  if (!fingerprint.ok()) return from_error(fingerprint.error());
  auto marked = store_.mark_gateway_joined(name, presented, at, *fingerprint);
  if (!marked.ok()) return from_error(marked.error());
  if (!*marked) {
    // Another redemption won the race, or the secret expired meanwhile.
    return refuse(409, Errc::kConflict, kAlreadyJoinedMessage);
  }
  log::notice("gateway " + name + " joined from " + request.peer_address + " (certificate " +
              cert->serial + " for " + url->host + ")");
  changed();
  return json_response(200, {{"name", name},
                             {"certificate", cert->certificate_pem},
                             {"ca_certificates", ca_.trusted_pems()},
                             {"gateway_url", gateway.url},
                             {"server_url", settings_.server_url}});
}

}  // namespace tether::server
