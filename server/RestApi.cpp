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

// Settings changes may carry up to 256 keys in one object.
protocol::JsonLimits settings_request_limits() {
  protocol::JsonLimits limits = request_limits();
  limits.max_object_members = kMaxSettings;
  limits.max_array_items = kMaxSettings;
  return limits;
}

HttpResponse from_error(const Error& error) {
  return error_response(http_status_for(error.code), error.code, error.message);
}

// Why a device said nothing (RestApi::DeviceAnswer's errors).
HttpResponse device_failure(const Error& error) {
  switch (error.code) {
    case Errc::kConflict: return error_response(409, Errc::kConflict, error.message);
    case Errc::kTimeout: return error_response(504, Errc::kTimeout, error.message);
    case Errc::kUnavailable: return error_response(502, Errc::kUnavailable, error.message);
    default: return from_error(error);
  }
}

std::string device_error_code(const protocol::ResultBody& result) {
  return result.error ? result.error->code : std::string(errc_name(Errc::kInternal));
}

std::string device_error_message(const protocol::ResultBody& result) {
  return result.error ? result.error->message : "it gave no reason";
}

json object_or_null(const json& data, const char* key) {
  auto it = data.find(key);
  return it != data.end() && it->is_object() ? *it : json(nullptr);
}

HttpResponse internal_error() {
  return error_response(500, Errc::kInternal, "the server failed");
}

// The request body as a JSON object; an empty body is an empty object.
Result<json> parse_body(const HttpRequest& request,
                        const protocol::JsonLimits& limits = request_limits()) {
  if (request.body.empty()) return json::object();
  TETHER_ASSIGN_OR_RETURN(json doc, protocol::parse_limited_json(request.body, limits));
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

// Shares one HttpRespond among copies and calls it at most once: whichever of a handler's
// paths answers first (its result, or a 500 after an exception) wins.
class RestApi::Responder {
 public:
  explicit Responder(HttpRespond respond) : state_(std::make_shared<State>()) {
    state_->respond = std::move(respond);
  }
  void operator()(HttpResponse response) const {
    if (state_->answered) return;
    state_->answered = true;
    HttpRespond respond = std::move(state_->respond);
    if (respond) respond(std::move(response));
  }

 private:
  struct State {
    HttpRespond respond;
    bool answered = false;
  };
  std::shared_ptr<State> state_;
};

RestApi::RestApi(Store& store, EnrollmentService& enrollment, LiveDevices& live,
                 AdminToken admin_token)
    : store_(store), enrollment_(enrollment), live_(live), admin_token_(std::move(admin_token)) {}

RestApi::~RestApi() = default;

void RestApi::handle(const HttpRequest& request, HttpRespond respond) noexcept {
  std::optional<Responder> responder;
  try {
    responder.emplace(std::move(respond));
    // Handlers see who is calling (HttpRequest::principal). A copy: the request is only
    // valid during this call anyway.
    HttpRequest authed = request;
    if (users_ != nullptr) {
      if (auto principal = users_->authenticate(request.authorization)) {
        authed.principal = principal->name;
        authed.principal_is_admin = principal->admin;
      }
    } else if (request.authorization.rfind("Bearer ", 0) == 0 &&
               admin_token_.matches(std::string_view(request.authorization).substr(7))) {
      authed.principal = kAdminPrincipal;
      authed.principal_is_admin = true;
    }
    if (auto response = route(authed, *responder)) (*responder)(std::move(*response));
    return;
  } catch (const std::exception& e) {
    log::error("REST " + request.method + " " + request.path + " failed: " + e.what());
  } catch (...) {
    log::error("REST " + request.method + " " + request.path + " failed");
  }
  try {
    if (responder) (*responder)(internal_error());
  } catch (...) {
    // Out of memory while answering: the listener's deadline answers instead.
  }
}

std::optional<HttpResponse> RestApi::handle_now(const HttpRequest& request) noexcept {
  try {
    // Shared, not on this stack: an answer that comes after we returned lands here unread.
    auto slot = std::make_shared<std::optional<HttpResponse>>();
    handle(request, [slot](HttpResponse response) { *slot = std::move(response); });
    return std::move(*slot);
  } catch (...) {
    return std::nullopt;
  }
}

std::optional<HttpResponse> RestApi::route(const HttpRequest& request, const Responder& respond) {
  if (request.path.rfind(kApiPrefix, 0) != 0) {
    return error_response(404, Errc::kNotFound, "no such resource: " + request.path.substr(0, 200));
  }
  const auto parts = split_path(std::string_view(request.path).substr(kApiPrefix.size()));
  const std::string& method = request.method;

  // The admin token, or a logged-in user's session (request.principal, set in handle()).
  auto require_admin = [&]() -> std::optional<HttpResponse> {
    const std::string& auth = request.authorization;
    if (request.principal.empty()) {
      HttpResponse r = error_response(
          401, Errc::kUnauthenticated,
          auth.empty() ? "this call needs the admin token (Authorization: Bearer ...)"
                       : "wrong admin token");
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return r;
    }
    return std::nullopt;
  };

  if (users_ != nullptr) {
    std::optional<Principal> principal;
    if (!request.principal.empty())
      principal = Principal{request.principal, request.principal_is_admin};
    if (auto response = users_->route(request, parts, principal)) return response;
  }
  if (lan_ != nullptr && LanDiscovery::owns(parts)) {
    if (auto denied = require_admin()) return *denied;
    return lan_->route(request, parts, [respond](HttpResponse r) { respond(std::move(r)); });
  }
  if (gateways_ != nullptr && GatewayApi::owns(parts)) {
    if (GatewayApi::needs_admin(parts)) {
      if (auto denied = require_admin()) return *denied;
    }
    return gateways_->route(request, parts);
  }
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
  if (parts.size() == 3 && parts[0] == "devices" &&
      (parts[2] == "reboot" || parts[2] == "poweroff")) {
    if (method != "POST") return method_not_allowed("POST");
    if (auto denied = require_admin()) return *denied;
    return power_action(
        request, parts[1],
        parts[2] == "reboot" ? protocol::CommandName::kReboot : protocol::CommandName::kPowerOff,
        respond);
  }
  if (parts.size() == 3 && parts[0] == "devices" && parts[2] == "settings") {
    if (method != "GET" && method != "PUT") return method_not_allowed("GET, PUT");
    if (auto denied = require_admin()) return *denied;
    if (method == "GET") return get_settings(parts[1], respond);
    return put_settings(request, parts[1], respond);
  }
  if (shadow_ != nullptr && ShadowService::owns_route(parts)) {
    if (auto denied = require_admin()) return *denied;
    return shadow_->route(request, parts, [respond](HttpResponse r) { respond(std::move(r)); });
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
  if (on_enrolled_) on_enrolled_(result->device_id);
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
  const auto via = f.opt_str("via", 64);
  if (auto status = f.finish(); !status.ok()) return from_error(status.error());
  std::optional<std::chrono::seconds> lifetime;
  if (ttl) lifetime = std::chrono::seconds(*ttl);
  // --via NAME: the token names the gateway's URL, and so does the enrolled device's config.
  std::string url;
  if (via) {
    auto gateway = store_.find_gateway(*via);
    if (!gateway.ok()) return from_error(gateway.error());
    if (!*gateway) return error_response(404, Errc::kNotFound, "no gateway " + via->substr(0, 64));
    url = (*gateway)->url;
  }
  auto created = enrollment_.create_token(lifetime, mac.value_or(""), url);
  if (!created.ok()) return from_error(created.error());
  log::info("enrollment token " + created->id + " created" +
            (created->mac.empty() ? "" : " for MAC " + created->mac));
  json answer = {{"id", created->id},
                 {"token", created->token},
                 {"expires_at", created->expires_at},
                 {"mac", created->mac.empty() ? json(nullptr) : json(created->mac)}};
  if (via) answer["via"] = *via;
  return json_response(201, answer);
}

json RestApi::device_json(const DeviceRecord& d, const LiveDeviceState* live,
                          bool with_details) const {
  json j = {
      {"id", d.id},
      {"name", d.name.empty() ? d.hostname : d.name},
      {"hostname", d.hostname},
      {"online", live != nullptr},
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
      {"instance", live && !live->instance.empty() ? json(live->instance) : json(nullptr)},
  };
  if (lan_ != nullptr) {
    const std::int64_t udp = lan_->last_seen_udp(d.id);
    j["last_seen_udp"] = udp > 0 ? json(udp) : json(nullptr);
  }
  if (with_details) {
    j["inventory"] = parsed_or_null(d.inventory_json);
    j["status"] =
        parsed_or_null(live && !live->status_json.empty() ? live->status_json : d.status_json);
    j["settings_error"] = d.settings_error.empty() ? json(nullptr) : json(d.settings_error);
  }
  return j;
}

HttpResponse RestApi::list_devices() {
  auto devices = store_.list_devices();
  if (!devices.ok()) return from_error(devices.error());
  json list = json::array();
  std::vector<std::string> ids;
  ids.reserve(devices->size());
  for (const auto& d : *devices) ids.push_back(d.id);
  // One look at the cluster's presence for the whole list, not one per device.
  const auto live = live_.live_states(ids);
  for (const auto& d : *devices) {
    const auto it = live.find(d.id);
    list.push_back(device_json(d, it == live.end() ? nullptr : &it->second, false));
  }
  return json_response(200, {{"devices", list}});
}

HttpResponse RestApi::show_device(const std::string& id) {
  auto device = find_device(id);
  if (!device.ok()) return from_error(device.error());
  const auto live = live_.live_state(device->id);
  return json_response(200, device_json(*device, live ? &*live : nullptr, true));
}

HttpResponse RestApi::revoke_device(const std::string& id, bool also_delete) {
  auto device = find_device(id);
  if (!device.ok()) return from_error(device.error());
  auto revoked = store_.revoke_device(id, also_delete);
  if (!revoked.ok()) return from_error(revoked.error());
  if (on_revoked_) on_revoked_(id);
  live_.disconnect(id, kCloseRevoked, also_delete ? "deleted" : "revoked");
  log::notice(std::string("device ") + (also_delete ? "deleted: " : "revoked: ") + id);
  if (also_delete) return json_response(200, {{"deleted", id}});
  device->revoked = true;
  return json_response(200, device_json(*device, nullptr, false));
}

Result<DeviceRecord> RestApi::find_device(const std::string& id) {
  if (!valid_device_id(id)) return make_error(Errc::kNotFound, "no device " + id.substr(0, 64));
  TETHER_ASSIGN_OR_RETURN(auto device, store_.find_device(id));
  if (!device || device->deleted) return make_error(Errc::kNotFound, "no device " + id);
  return std::move(*device);
}

void RestApi::ask_device(const std::string& id, protocol::UpBody body, const Responder& respond,
                         DeviceAnswer answer) {
  // Until request() returns, an answer of kUnavailable means the device was never asked: it
  // is offline (a conflict with its state), not that it went away meanwhile.
  auto asked = std::make_shared<bool>(false);
  live_.request(
      id, std::move(body),
      [asked, respond, answer = std::move(answer),
       alive = std::weak_ptr<RestApi*>(alive_)](Result<protocol::ResultBody> result) {
        // Runs from the event loop (a device's message, a timer): nothing may escape.
        try {
          const auto self = alive.lock();
          if (!self) {
            respond(error_response(503, Errc::kUnavailable, "the server is stopping"));
            return;
          }
          if (!result.ok() && result.error().code == Errc::kUnavailable && !*asked) {
            result = make_error(Errc::kConflict, result.error().message);
          }
          respond(answer(result));
        } catch (const std::exception& e) {
          log::error(std::string("REST answer after a device's result failed: ") + e.what());
          try {
            respond(internal_error());
          } catch (...) {
            // As in handle().
          }
        } catch (...) {
          log::error("REST answer after a device's result failed");
          try {
            respond(internal_error());
          } catch (...) {
            // As in handle().
          }
        }
      });
  *asked = true;
}

std::optional<HttpResponse> RestApi::power_action(const HttpRequest& request, const std::string& id,
                                                  protocol::CommandName action,
                                                  const Responder& respond) {
  auto body = parse_body(request);  // no fields yet; still refused when malformed
  if (!body.ok()) return from_error(body.error());
  auto device = find_device(id);
  if (!device.ok()) return from_error(device.error());
  const std::string name(protocol::command_name(action));
  protocol::Command command;
  command.name = action;
  ask_device(
      id, command, respond, [id, name](const Result<protocol::ResultBody>& result) -> HttpResponse {
        if (!result.ok()) {
          log::notice(name + " of device " + id + ": " + result.error().message);
          return device_failure(result.error());
        }
        if (!result->ok) {
          const std::string message = device_error_message(*result);
          log::notice(name + " of device " + id + " refused by the device: " + message);
          return error_response(502, device_error_code(*result),
                                "the device could not " + name + ": " + message);
        }
        log::notice(name + " of device " + id + ": the device accepted");
        return json_response(200, {{"device", id}, {"action", name}, {"result", result->data}});
      });
  return std::nullopt;
}

std::optional<HttpResponse> RestApi::get_settings(const std::string& id, const Responder& respond) {
  auto device = find_device(id);
  if (!device.ok()) return from_error(device.error());
  SettingsValues server;
  if (device->settings_json) {
    auto stored = settings_from_json(*device->settings_json);
    if (!stored.ok()) {
      return error_response(500, Errc::kInternal,
                            "the stored settings of device " + id + ": " + stored.error().message);
    }
    server = std::move(stored).value();
  }
  json base = {{"server", server},
               {"effective", nullptr},
               {"origins", nullptr},
               {"online", false},
               {"settings_error",
                device->settings_error.empty() ? json(nullptr) : json(device->settings_error)}};
  protocol::Command command;
  command.name = protocol::CommandName::kGetSettings;
  ask_device(id, command, respond,
             [base](const Result<protocol::ResultBody>& result) mutable -> HttpResponse {
               // The server's document is worth showing whatever the device said.
               if (!result.ok()) {
                 if (result.error().code != Errc::kConflict) {
                   base["online"] = result.error().code == Errc::kTimeout;
                   base["effective_error"] = result.error().message;
                 }
                 return json_response(200, base);
               }
               base["online"] = true;
               if (!result->ok) {
                 base["effective_error"] =
                     device_error_code(*result) + ": " + device_error_message(*result);
                 return json_response(200, base);
               }
               base["effective"] = object_or_null(result->data, "values");
               base["origins"] = object_or_null(result->data, "origins");
               return json_response(200, base);
             });
  return std::nullopt;
}

std::optional<HttpResponse> RestApi::put_settings(const HttpRequest& request, const std::string& id,
                                                  const Responder& respond) {
  auto device = find_device(id);
  if (!device.ok()) return from_error(device.error());
  auto body = parse_body(request, settings_request_limits());
  if (!body.ok()) return from_error(body.error());
  auto change = parse_settings_change(*body);
  if (!change.ok()) return from_error(change.error());
  SettingsValues current;
  if (device->settings_json) {
    auto stored = settings_from_json(*device->settings_json);
    if (!stored.ok()) {
      return error_response(500, Errc::kInternal,
                            "the stored settings of device " + id + ": " + stored.error().message);
    }
    current = std::move(stored).value();
  }
  auto merged = apply_settings_change(std::move(current), *change);
  if (!merged.ok()) return from_error(merged.error());
  if (settings_in_flight_.count(id) != 0) {
    return error_response(409, Errc::kConflict,
                          "another settings change for device " + id +
                              " is waiting for the device's answer; try again when it is done");
  }
  settings_in_flight_.insert(id);
  const std::string document = settings_to_json(*merged);
  protocol::Settings settings;
  settings.values = std::move(merged).value();
  ask_device(
      id, std::move(settings), respond,
      [this, id, document](const Result<protocol::ResultBody>& result) -> HttpResponse {
        settings_in_flight_.erase(id);
        if (!result.ok() && result.error().code == Errc::kConflict) {
          // Offline: kept, and pushed after the device's next hello.
          if (auto stored = store_.update_settings(id, document); !stored.ok()) {
            return from_error(stored.error());
          }
          log::notice("settings of device " + id + " stored; pushed when it is next online");
          return json_response(202, {{"applied", false}, {"pending", true}});
        }
        if (!result.ok()) {
          // The device may or may not have applied them; the stored document stays as it
          // was, and the next hello pushes that one.
          log::notice("settings of device " + id + ": " + result.error().message);
          return device_failure(result.error());
        }
        if (!result->ok) {
          const std::string code = device_error_code(*result);
          const std::string message =
              "the device refused the settings: " + device_error_message(*result);
          log::notice("settings of device " + id + ": " + message);
          const int status = code == errc_name(Errc::kPermissionDenied) ? 409
                             : code == errc_name(Errc::kBadValue)       ? 400
                                                                        : 502;
          return error_response(status, code, message);
        }
        if (auto stored = store_.update_settings(id, document); !stored.ok()) {
          log::error("device " + id +
                     " applied its settings but they cannot be stored: " + stored.error().message);
          return error_response(500, Errc::kInternal,
                                "the device applied the settings but the server could not store "
                                "them: " +
                                    stored.error().message);
        }
        log::notice("settings of device " + id + " applied");
        json changed = object_or_null(result->data, "changed");
        return json_response(200, {{"applied", true},
                                   {"changed", changed.is_null() ? json::object() : changed},
                                   {"effective", object_or_null(result->data, "values")}});
      });
  return std::nullopt;
}

}  // namespace tether::server
