#include "server/LanDiscovery.h"

#include "common/FileIo.h"
#include "common/Hex.h"
#include "common/Log.h"
#include "common/LwsFdWatcher.h"
#include "protocol/JsonFieldReader.h"
#include "protocol/LimitedJsonParser.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using protocol::JsonFieldReader;
using protocol::StringKind;

constexpr std::size_t kMaxDevicesPerCall = 256;
constexpr std::int64_t kMaxOnlineTimeoutMs = 10'000;
constexpr std::int64_t kMaxWakeWaitMs = 20'000;
constexpr std::int64_t kMaxScanTimeoutMs = 30'000;
constexpr std::int64_t kMaxRegisterWaitMs = 300'000;

lws_protocols* lan_protocols() {
  static lws_protocols table[] = {
      lws_fd_watcher_protocol(),
      {nullptr, nullptr, 0, 0, 0, nullptr, 0},
  };
  return table;
}

HttpResponse from_error(const Error& error) {
  return error_response(http_status_for(error.code), error.code, error.message);
}

Result<json> parse_body(const HttpRequest& request) {
  if (request.body.empty()) return json::object();
  protocol::JsonLimits limits;
  limits.max_bytes = 64 * 1024;
  limits.max_depth = 4;
  limits.max_array_items = kMaxDevicesPerCall;
  limits.max_object_members = 16;
  TETHER_ASSIGN_OR_RETURN(json doc, protocol::parse_limited_json(request.body, limits));
  if (!doc.is_object())
    return make_error(Errc::kWrongType, "the request body must be a JSON object");
  return doc;
}

HttpResponse method_not_allowed(const std::string& allowed) {
  HttpResponse r = error_response(405, Errc::kInvalidArgument,
                                  "method not allowed here (allowed: " + allowed + ")");
  r.headers.emplace_back("Allow", allowed);
  return r;
}

// Device ids from a body's "devices": full ids only (tetherctl resolves names and prefixes).
Result<std::vector<std::string>> device_ids(JsonFieldReader& f) {
  auto ids = f.str_array("devices", kMaxDevicesPerCall, 64, StringKind::kHex64, true);
  return ids;
}

}  // namespace

LanDiscovery::LanDiscovery(LanSettings settings, Store& store, EnrollmentService& enrollment,
                           LiveDevices& live)
    : settings_(std::move(settings)), store_(store), enrollment_(enrollment), live_(live) {
  std::string hex;
  for (char c : settings_.ca_fingerprint_hex) {
    if (c != ':') hex.push_back(c);
  }
  if (auto bytes = hex_decode(hex); bytes.ok() && bytes->size() == ca_fingerprint_.size()) {
    std::copy(bytes->begin(), bytes->end(), ca_fingerprint_.begin());
  }
  if (auto text = read_file(auto_registration_path(), 64); text.ok()) {
    auto_registration_ = text->rfind("on", 0) == 0;
  }
}

LanDiscovery::~LanDiscovery() {
  stop();
}

std::string LanDiscovery::auto_registration_path() const {
  return settings_.state_dir + "/auto-registration";
}

Status LanDiscovery::start(lws_context* context) {
  lws_context_creation_info info{};
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.vhost_name = "lan";
  info.protocols = lan_protocols();
  vhost_ = lws_create_vhost(context, &info);
  if (vhost_ == nullptr) return make_error(Errc::kInternal, "cannot create the LAN vhost");

  std::string host = settings_.listen_host;
  if (host == "::" || host.empty()) host = "0.0.0.0";
  TETHER_ASSIGN_OR_RETURN(socket_, DatagramSocket::open(vhost_, host));

  RegistrationListenerOptions reg;
  reg.host = host;
  reg.port = settings_.registration_port;
  reg.ca_fingerprint = ca_fingerprint_;
  reg.per_source_per_minute = settings_.registration_rate_per_minute;
  reg.total_per_minute = settings_.registration_rate_per_minute * 10;
  ScannerOptions scan;
  scan.device_port = settings_.device_port;
  scan.registration_port = settings_.registration_port;
  scan.ca_fingerprint = ca_fingerprint_;
  scanner_ = std::make_unique<Scanner>(context, vhost_, *socket_, store_, live_, pending_, scan);
  Scanner* scanner = scanner_.get();
  auto listener = RegistrationListener::start(
      context, vhost_, reg, enrollment_, pending_, [this] { return auto_registration_; },
      [scanner](const std::string& id, const std::string& address, const std::string& mac) {
        scanner->on_token_issued(id, address, mac);
      });
  // Not fatal: the rest of the server (and of the LAN features) works without it; devices
  // found by a scan then cannot ask for their token.
  if (listener.ok()) {
    listener_ = std::move(*listener);
  } else {
    log::warning("no registration requests: " + listener.error().message);
  }
  online_ = std::make_unique<OnlineChecker>(context, *socket_, store_, live_, settings_.device_port,
                                            settings_.online_check_interval);
  wake_ = std::make_unique<WakeService>(context, *socket_, store_, live_, settings_.wake_rate);
  if (listener_) {
    log::notice("registration requests on " + host + ":" + std::to_string(listener_->port()) +
                " (auto-registration " + (auto_registration_ ? "on" : "off") + ")");
  }
  return {};
}

void LanDiscovery::stop() {
  wake_.reset();
  online_.reset();
  scanner_.reset();
  listener_.reset();
  socket_.reset();
}

std::int64_t LanDiscovery::last_seen_udp(const std::string& id) const {
  return online_ ? online_->last_seen_udp(id) : 0;
}

bool LanDiscovery::owns(const std::vector<std::string>& parts) {
  if (parts.empty()) return false;
  if (parts[0] == "scan" && parts.size() <= 2) return true;
  if ((parts[0] == "online" || parts[0] == "wake") && parts.size() == 1) return true;
  return parts.size() == 2 && parts[0] == "settings" && parts[1] == "auto-registration";
}

std::optional<HttpResponse> LanDiscovery::route(const HttpRequest& request,
                                                const std::vector<std::string>& parts,
                                                HttpRespond respond) {
  const std::string& method = request.method;
  if (parts[0] == "settings") {
    if (method == "GET") return auto_registration_json();
    if (method == "PUT") return set_auto_registration(request);
    return method_not_allowed("GET, PUT");
  }
  if (!scanner_) {
    return error_response(503, Errc::kUnavailable, "the LAN features are not running");
  }
  if (parts[0] == "scan" && parts.size() == 1) {
    if (method != "POST") return method_not_allowed("POST");
    return start_scan(request);
  }
  if (parts[0] == "scan") {
    if (method != "GET") return method_not_allowed("GET");
    auto job = scanner_->describe(parts[1]);
    if (!job)
      return error_response(404, Errc::kNotFound,
                            "no such scan (finished scans are kept for a while only)");
    return json_response(200, *job);
  }
  if (parts[0] == "online") {
    if (method != "POST") return method_not_allowed("POST");
    return online(request, std::move(respond));
  }
  if (method != "POST") return method_not_allowed("POST");
  return wake(request, std::move(respond));
}

std::optional<HttpResponse> LanDiscovery::start_scan(const HttpRequest& request) {
  auto body = parse_body(request);
  if (!body.ok()) return from_error(body.error());
  JsonFieldReader f(*body, "");
  const auto broadcast = f.opt_str("broadcast", 15, StringKind::kToken);
  const auto range = f.opt_str("range", 18);
  ScanRequest scan;
  scan.tcp = f.opt_boolean("tcp", false);
  scan.register_devices = f.opt_boolean("register", false);
  scan.timeout = std::chrono::milliseconds(
      f.opt_integer("timeout_ms", 100, kMaxScanTimeoutMs).value_or(scan.tcp ? 1000 : 2000));
  scan.register_wait = std::chrono::milliseconds(
      f.opt_integer("register_wait_ms", 1000, kMaxRegisterWaitMs).value_or(60'000));
  if (auto status = f.finish(); !status.ok()) return from_error(status.error());
  if (broadcast) {
    scan.broadcast = parse_ipv4(*broadcast);
    if (!scan.broadcast)
      return error_response(400, Errc::kBadValue, "broadcast: not an IPv4 address");
  }
  if (range) {
    auto subnet = Ipv4Subnet::parse(*range);
    if (!subnet.ok())
      return error_response(400, Errc::kBadValue, "range: " + subnet.error().message);
    scan.range = *subnet;
  }
  auto id = scanner_->start(scan);
  if (!id.ok()) {
    return error_response(id.error().code == Errc::kUnavailable ? 503 : 400, id.error().code,
                          id.error().message);
  }
  auto job = scanner_->describe(*id);
  return json_response(202, job ? *job : json{{"id", *id}});
}

std::optional<HttpResponse> LanDiscovery::online(const HttpRequest& request, HttpRespond respond) {
  auto body = parse_body(request);
  if (!body.ok()) return from_error(body.error());
  JsonFieldReader f(*body, "");
  auto ids = device_ids(f);
  const auto timeout = f.opt_integer("timeout_ms", 10, kMaxOnlineTimeoutMs).value_or(1000);
  if (auto status = f.finish(); !status.ok()) return from_error(status.error());
  if (!ids.ok()) return from_error(ids.error());
  if (ids->empty())
    return error_response(400, Errc::kBadValue, "devices: name at least one device");
  online_->check(*ids, std::chrono::milliseconds(timeout), [respond](json results) {
    respond(json_response(200, {{"devices", std::move(results)}}));
  });
  return std::nullopt;
}

std::optional<HttpResponse> LanDiscovery::wake(const HttpRequest& request, HttpRespond respond) {
  auto body = parse_body(request);
  if (!body.ok()) return from_error(body.error());
  JsonFieldReader f(*body, "");
  auto ids = device_ids(f);
  const auto wait = f.opt_integer("wait_ms", 0, kMaxWakeWaitMs).value_or(0);
  if (auto status = f.finish(); !status.ok()) return from_error(status.error());
  if (!ids.ok()) return from_error(ids.error());
  if (ids->empty())
    return error_response(400, Errc::kBadValue, "devices: name at least one device");
  wake_->wake(*ids, std::chrono::milliseconds(wait), [respond](json results) {
    respond(json_response(200, {{"devices", std::move(results)}}));
  });
  return std::nullopt;
}

HttpResponse LanDiscovery::auto_registration_json() const {
  json j = {{"enabled", auto_registration_}};
  if (listener_) {
    const auto& c = listener_->counters();
    j["token_requests"] = {{"total", c.requests},
                           {"issued", c.issued},
                           {"disabled", c.disabled},
                           {"refused", c.refused},
                           {"wrong_server", c.wrong_server},
                           {"malformed", c.malformed}};
  }
  return json_response(200, j);
}

HttpResponse LanDiscovery::set_auto_registration(const HttpRequest& request) {
  auto body = parse_body(request);
  if (!body.ok()) return from_error(body.error());
  JsonFieldReader f(*body, "");
  const bool enabled = f.boolean("enabled");
  if (auto status = f.finish(); !status.ok()) return from_error(status.error());
  if (auto written = write_file_atomic(auto_registration_path(), enabled ? "on\n" : "off\n", 0600);
      !written.ok()) {
    return from_error(written.error());
  }
  auto_registration_ = enabled;
  log::notice(std::string("auto-registration turned ") + (enabled ? "on" : "off") + " by " +
              (request.principal.empty() ? "admin" : request.principal));
  return auto_registration_json();
}

}  // namespace tether::server
