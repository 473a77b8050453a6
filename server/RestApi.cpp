#include "server/RestApi.h"

#include <exception>
#include <vector>

#include "common/Hex.h"
#include "common/Log.h"
#include "protocol/JsonFieldReader.h"
#include "protocol/LimitedJsonParser.h"
#include "protocol/MacAddress.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using protocol::JsonFieldReader;
using protocol::StringKind;

constexpr std::string_view kApiPrefix = "/api/v1/";

protocol::JsonLimits request_limits() {
  protocol::JsonLimits limits;
  limits.max_bytes = kMaxRequestBody;
  limits.max_depth = 8;
  limits.max_string_bytes = 64 * 1024;
  limits.max_key_bytes = 64;
  limits.max_array_items = 1024;
  limits.max_object_members = 64;
  limits.max_values = 10000;
  return limits;
}

HttpResponse from_error(const Error& error) {
  return error_response(http_status_for(error.code), error.code, error.message);
}

// The request body as a JSON object; an empty body is an empty object.
Result<json> parse_body(const HttpRequest& request) {
  if (request.body.empty()) return json::object();
  TETHER_ASSIGN_OR_RETURN(json doc, protocol::parse_limited_json(request.body, request_limits()));
  if (!doc.is_object()) {
    return make_error(Errc::kWrongType, "the request body must be a JSON object, not " +
                                            std::string(protocol::json_type_name(doc)));
  }
  return doc;
}

std::vector<std::string> split_path(std::string_view rest) {
  std::vector<std::string> out;
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  std::size_t start = 0;
  while (start <= rest.size()) {
    const auto slash = rest.find('/', start);
    const auto end = slash == std::string_view::npos ? rest.size() : slash;
    out.emplace_back(rest.substr(start, end - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return out;
}

HttpResponse method_not_allowed(const std::string& allowed) {
  HttpResponse r = error_response(405, Errc::kInvalidArgument,
                                  "method not allowed here (allowed: " + allowed + ")");
  r.headers.emplace_back("Allow", allowed);
  return r;
}

json parsed_or_null(const std::string& text) {
  if (text.empty()) return nullptr;
  json doc = json::parse(text, nullptr, false);
  return doc.is_discarded() ? json(nullptr) : doc;
}

bool valid_device_id(const std::string& id) {
  return id.size() == 64 && is_lower_hex(id);
}

}  // namespace

RestApi::RestApi(Store& store, EnrollmentService& enrollment, LiveDevices& live,
                 AdminToken admin_token)
    : store_(store), enrollment_(enrollment), live_(live), admin_token_(std::move(admin_token)) {}

HttpResponse RestApi::handle(const HttpRequest& request) noexcept {
  try {
    return route(request);
  } catch (const std::exception& e) {
    log::error("REST " + request.method + " " + request.path + " failed: " + e.what());
  } catch (...) {
    log::error("REST " + request.method + " " + request.path + " failed");
  }
  try {
    return error_response(500, Errc::kInternal, "the server failed");
  } catch (...) {
    HttpResponse r;
    r.status = 500;
    return r;
  }
}

HttpResponse RestApi::route(const HttpRequest& request) {
  if (request.path.rfind(kApiPrefix, 0) != 0) {
    return error_response(404, Errc::kNotFound, "no such resource: " + request.path.substr(0, 200));
  }
  const auto parts = split_path(std::string_view(request.path).substr(kApiPrefix.size()));
  const std::string& method = request.method;

  auto require_admin = [&]() -> std::optional<HttpResponse> {
    constexpr std::string_view kBearer = "Bearer ";
    const std::string& auth = request.authorization;
    if (auth.size() <= kBearer.size() || auth.compare(0, kBearer.size(), kBearer) != 0 ||
        !admin_token_.matches(std::string_view(auth).substr(kBearer.size()))) {
      HttpResponse r = error_response(
          401, Errc::kUnauthenticated,
          auth.empty() ? "this call needs the admin token (Authorization: Bearer ...)"
                       : "wrong admin token");
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return r;
    }
    return std::nullopt;
  };

  if (parts.size() == 1 && parts[0] == "enroll") {
    if (method != "POST") return method_not_allowed("POST");
    return enroll(request);
  }
  if (parts.size() == 1 && parts[0] == "enroll-tokens") {
    if (method != "POST") return method_not_allowed("POST");
    if (auto denied = require_admin()) return *denied;
    return create_enroll_token(request);
  }
  if (parts.size() == 1 && parts[0] == "devices") {
    if (method != "GET") return method_not_allowed("GET");
    if (auto denied = require_admin()) return *denied;
    return list_devices();
  }
  if (parts.size() == 2 && parts[0] == "devices") {
    if (method != "GET" && method != "DELETE") return method_not_allowed("GET, DELETE");
    if (auto denied = require_admin()) return *denied;
    if (method == "GET") return show_device(parts[1]);
    return revoke_device(parts[1], true);
  }
  if (parts.size() == 3 && parts[0] == "devices" && parts[2] == "revoke") {
    if (method != "POST") return method_not_allowed("POST");
    if (auto denied = require_admin()) return *denied;
    return revoke_device(parts[1], false);
  }
  return error_response(404, Errc::kNotFound, "no such resource: " + request.path.substr(0, 200));
}

HttpResponse RestApi::enroll(const HttpRequest& request) {
  if (auto wait = enrollment_.admit_attempt(request.peer_address)) {
    HttpResponse r = error_response(429, Errc::kUnavailable,
                                    "too many enrollment attempts from this address; retry in " +
                                        std::to_string(wait->count()) + " s");
    r.headers.emplace_back("Retry-After", std::to_string(wait->count()));
    return r;
  }
  auto body = parse_body(request);
  if (!body.ok()) return from_error(body.error());
  JsonFieldReader f(*body, "");
  EnrollmentRequest req;
  req.secret = f.str("secret", 1024, StringKind::kToken);
  req.csr_pem = f.str("csr_pem", 16 * 1024, StringKind::kText);
  req.hostname = f.opt_str("hostname", 253).value_or("");
  const auto macs = f.str_array("macs", 64, 17);
  if (auto status = f.finish(); !status.ok()) return from_error(status.error());
  for (const auto& text : macs) {
    auto mac = protocol::MacAddress::parse(text);
    if (!mac.ok()) return error_response(400, Errc::kBadValue, "macs: " + mac.error().message);
    req.macs.push_back(mac->to_string());
  }
  req.source_address = request.peer_address;
  auto result = enrollment_.enroll(req);
  if (!result.ok()) {
    log::notice("enrollment from " + request.peer_address + " refused: " + result.error().message);
    return from_error(result.error());
  }
  log::notice(std::string(result->re_enrolled ? "device re-enrolled: " : "device enrolled: ") +
              result->device_id + " (" + (req.hostname.empty() ? "no hostname" : req.hostname) +
              ") from " + request.peer_address);
  return json_response(201, {{"device_id", result->device_id},
                             {"certificate_pem", result->certificate_pem},
                             {"ca_certificates_pem", result->ca_certificates_pem},
                             {"server_url", result->server_url}});
}

HttpResponse RestApi::create_enroll_token(const HttpRequest& request) {
  auto body = parse_body(request);
  if (!body.ok()) return from_error(body.error());
  JsonFieldReader f(*body, "");
  const auto ttl = f.opt_integer("ttl_s", 1, 30 * 86400);
  const auto mac = f.opt_str("mac", 17);
  if (auto status = f.finish(); !status.ok()) return from_error(status.error());
  std::optional<std::chrono::seconds> lifetime;
  if (ttl) lifetime = std::chrono::seconds(*ttl);
  auto created = enrollment_.create_token(lifetime, mac.value_or(""));
  if (!created.ok()) return from_error(created.error());
  log::info("enrollment token " + created->id + " created" +
            (created->mac.empty() ? "" : " for MAC " + created->mac));
  return json_response(201, {{"id", created->id},
                             {"token", created->token},
                             {"expires_at", created->expires_at},
                             {"mac", created->mac.empty() ? json(nullptr) : json(created->mac)}});
}

json RestApi::device_json(const DeviceRecord& d, bool with_details) const {
  const auto live = live_.live_state(d.id);
  json j = {
      {"id", d.id},
      {"name", d.name.empty() ? d.hostname : d.name},
      {"hostname", d.hostname},
      {"online", live.has_value()},
      {"connected_via", live ? live->connected_via : std::string("direct")},
      {"address", live && !live->address.empty() ? live->address : d.address},
      {"agent_version", d.agent_version},
      {"os", d.os},
      {"macs", d.macs},
      {"first_seen", d.first_seen},
      {"last_seen", live ? std::max(live->last_seen, d.last_seen) : d.last_seen},
      {"cert_serial", d.cert_serial},
      {"cert_expires", d.cert_expires},
      {"revoked", d.revoked},
  };
  if (with_details) {
    j["inventory"] = parsed_or_null(d.inventory_json);
    j["status"] =
        parsed_or_null(live && !live->status_json.empty() ? live->status_json : d.status_json);
  }
  return j;
}

HttpResponse RestApi::list_devices() {
  auto devices = store_.list_devices();
  if (!devices.ok()) return from_error(devices.error());
  json list = json::array();
  for (const auto& d : *devices) list.push_back(device_json(d, false));
  return json_response(200, {{"devices", list}});
}

HttpResponse RestApi::show_device(const std::string& id) {
  if (!valid_device_id(id)) {
    return error_response(404, Errc::kNotFound, "no device " + id.substr(0, 64));
  }
  auto device = store_.find_device(id);
  if (!device.ok()) return from_error(device.error());
  if (!*device || (*device)->deleted)
    return error_response(404, Errc::kNotFound, "no device " + id);
  return json_response(200, device_json(**device, true));
}

HttpResponse RestApi::revoke_device(const std::string& id, bool also_delete) {
  if (!valid_device_id(id)) {
    return error_response(404, Errc::kNotFound, "no device " + id.substr(0, 64));
  }
  auto device = store_.find_device(id);
  if (!device.ok()) return from_error(device.error());
  if (!*device || (*device)->deleted)
    return error_response(404, Errc::kNotFound, "no device " + id);
  auto revoked = store_.revoke_device(id, also_delete);
  if (!revoked.ok()) return from_error(revoked.error());
  live_.disconnect(id, kCloseRevoked, also_delete ? "deleted" : "revoked");
  log::notice(std::string("device ") + (also_delete ? "deleted: " : "revoked: ") + id);
  if (also_delete) return json_response(200, {{"deleted", id}});
  (*device)->revoked = true;
  return json_response(200, device_json(**device, false));
}

}  // namespace tether::server
