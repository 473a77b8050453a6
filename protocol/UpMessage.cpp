#include "protocol/UpMessage.h"

#include <arpa/inet.h>

#include "protocol/JsonFieldReader.h"
#include "protocol/MacAddress.h"

namespace tether::protocol {
namespace {

using json = nlohmann::json;

constexpr std::int64_t kMaxTime = std::int64_t{1} << 40;  // far beyond any real clock
constexpr std::int64_t kMaxBytes = std::int64_t{1} << 56;
constexpr std::size_t kMaxPem = 16 * 1024;

constexpr std::string_view kTypeNames[] = {
    "hello",     "status",       "inventory",      "event",      "command",
    "result",    "shadow_start", "shadow_stop",    "cert_renew", "trust_update",
    "wake_peer", "settings",     "gateway_status",
};

template <typename Enum, std::size_t N>
std::optional<Enum> enum_from(std::string_view name, const std::string_view (&names)[N]) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == name) return static_cast<Enum>(i);
  }
  return std::nullopt;
}

constexpr std::string_view kSeverityNames[] = {"debug", "info", "notice", "warning", "error"};
constexpr std::string_view kCommandNames[] = {"reboot", "poweroff", "refresh_inventory",
                                              "get_settings"};
constexpr std::string_view kViewerNames[] = {"browser", "external"};
constexpr std::string_view kGatewayServerStates[] = {"unavailable", "connected"};

template <typename Enum, std::size_t N>
Enum read_enum(JsonFieldReader& f, std::string_view key, const std::string_view (&names)[N]) {
  const std::string text = f.str(key, 32, StringKind::kToken);
  if (f.failed()) return Enum{};
  auto value = enum_from<Enum>(text, names);
  if (!value) {
    std::string allowed;
    for (auto n : names) allowed += (allowed.empty() ? "" : ", ") + std::string(n);
    f.fail(Errc::kBadValue, f.field_path(key) + " must be one of " + allowed);
    return Enum{};
  }
  return *value;
}

bool valid_wol_letters(std::string_view s) {
  return s.size() <= 16 && s.find_first_not_of("pumbagsfd") == std::string_view::npos;
}

void check_pem(JsonFieldReader& f, std::string_view key, const std::string& pem,
               std::string_view label) {
  if (f.failed()) return;
  const std::string begin = "-----BEGIN " + std::string(label) + "-----";
  if (pem.rfind(begin, 0) != 0) {
    f.fail(Errc::kBadValue, f.field_path(key) + " must be a PEM " + std::string(label));
  }
}

// ---- decoders -----------------------------------------------------------------------------

OsInfo decode_os(JsonFieldReader& f) {
  OsInfo os;
  os.name = f.str("name", 128);
  os.version = f.str("version", 64);
  os.kernel = f.str("kernel", 128);
  os.arch = f.str("arch", 32);
  return os;
}

Hello decode_hello(JsonFieldReader& f) {
  Hello h;
  h.device_id = f.str("device_id", 64, StringKind::kHex64);
  h.agent_version = f.str("agent_version", 64);
  h.os = f.object<OsInfo>("os", decode_os);
  h.hostname = f.str("hostname", 253);
  h.capabilities = f.str_array("capabilities", 32, 32, StringKind::kToken);
  return h;
}

StatusReport decode_status(JsonFieldReader& f) {
  StatusReport s;
  s.uptime_s = f.integer("uptime_s", 0, kMaxTime);
  s.load1 = f.number("load1", 0, 1e6);
  s.mem_total_kb = f.integer("mem_total_kb", 0, kMaxBytes);
  s.mem_available_kb = f.integer("mem_available_kb", 0, kMaxBytes);
  s.shadow_sessions = f.integer("shadow_sessions", 0, 1000);
  return s;
}

NicInfo decode_nic(JsonFieldReader& f) {
  NicInfo n;
  n.name = f.str("name", 32);
  n.mac = f.opt_str("mac", 17).value_or("");
  if (!n.mac.empty() && !f.failed()) {
    auto mac = MacAddress::parse(n.mac);
    if (!mac.ok()) f.fail(Errc::kBadValue, f.field_path("mac") + ": " + mac.error().message);
  }
  n.driver = f.opt_str("driver", 64).value_or("");
  n.link_up = f.opt_boolean("link_up", false);
  n.speed_mbps = f.opt_integer("speed_mbps", 0, 10'000'000);
  n.addresses = f.str_array("addresses", 64, 64);
  n.wol_supported = f.opt_str("wol_supported", 16).value_or("");
  n.wol_enabled = f.opt_str("wol_enabled", 16).value_or("");
  if (!f.failed() && (!valid_wol_letters(n.wol_supported) || !valid_wol_letters(n.wol_enabled))) {
    f.fail(Errc::kBadValue, f.path() + ": wake-on-LAN modes use ethtool's letters pumbagsfd");
  }
  return n;
}

BlockDeviceInfo decode_block(JsonFieldReader& f) {
  BlockDeviceInfo b;
  b.name = f.str("name", 64);
  b.model = f.opt_str("model", 128).value_or("");
  b.size_bytes = f.integer("size_bytes", 0, kMaxBytes);
  b.removable = f.opt_boolean("removable", false);
  return b;
}

UsbDeviceInfo decode_usb(JsonFieldReader& f) {
  UsbDeviceInfo u;
  u.vendor_id = f.str("vendor_id", 4, StringKind::kToken);
  u.product_id = f.str("product_id", 4, StringKind::kToken);
  u.manufacturer = f.opt_str("manufacturer", 128).value_or("");
  u.product = f.opt_str("product", 128).value_or("");
  u.serial = f.opt_str("serial", 128).value_or("");
  return u;
}

DisplayInfo decode_display(JsonFieldReader& f) {
  DisplayInfo d;
  d.connector = f.str("connector", 64);
  d.connected = f.opt_boolean("connected", false);
  d.modes = f.str_array("modes", 128, 32);
  return d;
}

Inventory decode_inventory(JsonFieldReader& f) {
  Inventory inv;
  inv.cpu_model = f.opt_str("cpu_model", 128).value_or("");
  inv.cpu_count = f.integer("cpu_count", 0, 65536);
  inv.memory_kb = f.integer("memory_kb", 0, kMaxBytes);
  inv.nics = f.array_of<NicInfo>("nics", 256, decode_nic);
  inv.block_devices = f.array_of<BlockDeviceInfo>("block_devices", 256, decode_block);
  inv.usb_devices = f.array_of<UsbDeviceInfo>("usb_devices", 256, decode_usb);
  inv.displays = f.array_of<DisplayInfo>("displays", 64, decode_display);
  return inv;
}

Event decode_event(JsonFieldReader& f) {
  Event e;
  e.kind = f.str("kind", 64, StringKind::kToken);
  e.severity = read_enum<Severity>(f, "severity", kSeverityNames);
  e.message = f.str("message", 4096, StringKind::kText);
  e.time = f.integer("time", 0, kMaxTime);
  e.data = f.opt_object("data");
  return e;
}

Command decode_command(JsonFieldReader& f) {
  Command c;
  c.name = read_enum<CommandName>(f, "name", kCommandNames);
  c.args = f.opt_object("args");
  return c;
}

RemoteError decode_remote_error(JsonFieldReader& f) {
  RemoteError e;
  e.code = f.str("code", 64, StringKind::kToken);
  e.message = f.str("message", 4096, StringKind::kText);
  return e;
}

ResultBody decode_result(JsonFieldReader& f) {
  ResultBody r;
  r.ok = f.boolean("ok");
  if (f.failed()) return r;
  if (!r.ok) {
    r.error = f.object<RemoteError>("error", decode_remote_error);
  }
  r.data = f.opt_object("data");
  return r;
}

ShadowStart decode_shadow_start(JsonFieldReader& f) {
  ShadowStart s;
  s.session_id = f.str("session_id", 64, StringKind::kToken);
  s.tunnel_url = f.str("tunnel_url", 512);
  if (!f.failed() && s.tunnel_url.rfind("wss://", 0) != 0) {
    f.fail(Errc::kBadValue, f.field_path("tunnel_url") + " must be a wss:// URL");
  }
  s.token = f.str("token", 128, StringKind::kToken);
  s.view_only = f.opt_boolean("view_only", false);
  s.monitor = f.opt_str("monitor", 64).value_or("");
  s.admin = f.str("admin", 128);
  s.viewer = read_enum<ViewerKind>(f, "viewer", kViewerNames);
  return s;
}

ShadowStop decode_shadow_stop(JsonFieldReader& f) {
  ShadowStop s;
  s.session_id = f.str("session_id", 64, StringKind::kToken);
  s.reason = f.str("reason", 64, StringKind::kToken);
  s.message = f.opt_str("message", 1024, StringKind::kText).value_or("");
  return s;
}

CertRenew decode_cert_renew(JsonFieldReader& f) {
  CertRenew c;
  c.csr_pem = f.str("csr_pem", kMaxPem, StringKind::kText);
  check_pem(f, "csr_pem", c.csr_pem, "CERTIFICATE REQUEST");
  return c;
}

CertRenewAck decode_cert_renew_ack_fields(JsonFieldReader& f) {
  CertRenewAck a;
  a.certificate_pem = f.str("certificate_pem", kMaxPem, StringKind::kText);
  check_pem(f, "certificate_pem", a.certificate_pem, "CERTIFICATE");
  a.ca_certificates_pem = f.str_array("ca_certificates_pem", 8, kMaxPem, StringKind::kText);
  for (const auto& pem : a.ca_certificates_pem)
    check_pem(f, "ca_certificates_pem", pem, "CERTIFICATE");
  return a;
}

TrustUpdate decode_trust_update(JsonFieldReader& f) {
  TrustUpdate t;
  t.ca_fingerprints = f.str_array("ca_fingerprints", 16, 64, StringKind::kHex64, true);
  if (!f.failed() && t.ca_fingerprints.empty()) {
    f.fail(Errc::kBadValue, f.field_path("ca_fingerprints") + " must not be empty");
  }
  t.ca_certificates_pem = f.str_array("ca_certificates_pem", 16, kMaxPem, StringKind::kText);
  for (const auto& pem : t.ca_certificates_pem)
    check_pem(f, "ca_certificates_pem", pem, "CERTIFICATE");
  return t;
}

WakeTarget decode_wake_target(JsonFieldReader& f) {
  WakeTarget t;
  t.mac = f.str("mac", 17);
  if (!f.failed()) {
    auto mac = MacAddress::parse(t.mac);
    if (!mac.ok()) {
      f.fail(Errc::kBadValue, f.field_path("mac") + ": " + mac.error().message);
    } else {
      t.mac = mac->to_string();
    }
  }
  t.broadcast = f.str("broadcast", 15);
  in_addr addr{};
  if (!f.failed() && inet_pton(AF_INET, t.broadcast.c_str(), &addr) != 1) {
    f.fail(Errc::kBadValue, f.field_path("broadcast") + " must be an IPv4 address");
  }
  return t;
}

WakePeer decode_wake_peer(JsonFieldReader& f, const json& body) {
  WakePeer w;
  w.targets = f.array_of<WakeTarget>("targets", 256, decode_wake_target, true);
  if (!f.failed() && w.targets.empty()) {
    f.fail(Errc::kBadValue, f.field_path("targets") + " must not be empty");
  }
  w.ports = {9, 7};
  if (f.failed()) return w;
  if (auto it = body.find("ports"); it != body.end() && !it->is_null()) {
    if (!it->is_array() || it->empty() || it->size() > 4) {
      f.fail(Errc::kBadValue, f.field_path("ports") + " must be an array of 1 to 4 ports");
      return w;
    }
    w.ports.clear();
    for (const auto& p : *it) {
      if (!p.is_number_integer() || p.get<std::int64_t>() < 1 || p.get<std::int64_t>() > 65535) {
        f.fail(Errc::kBadValue, f.field_path("ports") + " must hold ports 1 to 65535");
        return w;
      }
      w.ports.push_back(p.get<std::int64_t>());
    }
  }
  return w;
}

Settings decode_settings(JsonFieldReader& f) {
  Settings s;
  s.values = f.str_map("values", 256, 64, 1024);
  return s;
}

GatewayStatus decode_gateway_status(JsonFieldReader& f) {
  GatewayStatus g;
  g.server_connected = read_enum<int>(f, "server", kGatewayServerStates) == 1;
  return g;
}

// ---- encoders -----------------------------------------------------------------------------

json os_json(const OsInfo& os) {
  return {{"name", os.name}, {"version", os.version}, {"kernel", os.kernel}, {"arch", os.arch}};
}

struct BodyEncoder {
  json operator()(const Hello& h) const {
    return {{"device_id", h.device_id},
            {"agent_version", h.agent_version},
            {"os", os_json(h.os)},
            {"hostname", h.hostname},
            {"capabilities", h.capabilities}};
  }
  json operator()(const StatusReport& s) const {
    return {{"uptime_s", s.uptime_s},
            {"load1", s.load1},
            {"mem_total_kb", s.mem_total_kb},
            {"mem_available_kb", s.mem_available_kb},
            {"shadow_sessions", s.shadow_sessions}};
  }
  json operator()(const Inventory& inv) const {
    json nics = json::array();
    for (const auto& n : inv.nics) {
      json j = {{"name", n.name},
                {"mac", n.mac},
                {"driver", n.driver},
                {"link_up", n.link_up},
                {"addresses", n.addresses},
                {"wol_supported", n.wol_supported},
                {"wol_enabled", n.wol_enabled}};
      if (n.speed_mbps) j["speed_mbps"] = *n.speed_mbps;
      nics.push_back(std::move(j));
    }
    json block = json::array();
    for (const auto& b : inv.block_devices) {
      block.push_back({{"name", b.name},
                       {"model", b.model},
                       {"size_bytes", b.size_bytes},
                       {"removable", b.removable}});
    }
    json usb = json::array();
    for (const auto& u : inv.usb_devices) {
      usb.push_back({{"vendor_id", u.vendor_id},
                     {"product_id", u.product_id},
                     {"manufacturer", u.manufacturer},
                     {"product", u.product},
                     {"serial", u.serial}});
    }
    json displays = json::array();
    for (const auto& d : inv.displays) {
      displays.push_back(
          {{"connector", d.connector}, {"connected", d.connected}, {"modes", d.modes}});
    }
    return {{"cpu_model", inv.cpu_model}, {"cpu_count", inv.cpu_count},
            {"memory_kb", inv.memory_kb}, {"nics", nics},
            {"block_devices", block},     {"usb_devices", usb},
            {"displays", displays}};
  }
  json operator()(const Event& e) const {
    return {{"kind", e.kind},
            {"severity", severity_name(e.severity)},
            {"message", e.message},
            {"time", e.time},
            {"data", e.data}};
  }
  json operator()(const Command& c) const {
    return {{"name", command_name(c.name)}, {"args", c.args}};
  }
  json operator()(const ResultBody& r) const {
    json j = {{"ok", r.ok}};
    if (r.error) j["error"] = {{"code", r.error->code}, {"message", r.error->message}};
    if (!r.data.empty()) j["data"] = r.data;
    return j;
  }
  json operator()(const ShadowStart& s) const {
    return {{"session_id", s.session_id},
            {"tunnel_url", s.tunnel_url},
            {"token", s.token},
            {"view_only", s.view_only},
            {"monitor", s.monitor},
            {"admin", s.admin},
            {"viewer", viewer_kind_name(s.viewer)}};
  }
  json operator()(const ShadowStop& s) const {
    return {{"session_id", s.session_id}, {"reason", s.reason}, {"message", s.message}};
  }
  json operator()(const CertRenew& c) const { return {{"csr_pem", c.csr_pem}}; }
  json operator()(const TrustUpdate& t) const {
    return {{"ca_fingerprints", t.ca_fingerprints}, {"ca_certificates_pem", t.ca_certificates_pem}};
  }
  json operator()(const WakePeer& w) const {
    json targets = json::array();
    for (const auto& t : w.targets) targets.push_back({{"mac", t.mac}, {"broadcast", t.broadcast}});
    return {{"targets", targets}, {"ports", w.ports}};
  }
  json operator()(const Settings& s) const { return {{"values", s.values}}; }
  json operator()(const GatewayStatus& g) const {
    return {{"server", kGatewayServerStates[g.server_connected ? 1 : 0]}};
  }
};

struct BodyTyper {
  UpType operator()(const Hello&) const { return UpType::kHello; }
  UpType operator()(const StatusReport&) const { return UpType::kStatus; }
  UpType operator()(const Inventory&) const { return UpType::kInventory; }
  UpType operator()(const Event&) const { return UpType::kEvent; }
  UpType operator()(const Command&) const { return UpType::kCommand; }
  UpType operator()(const ResultBody&) const { return UpType::kResult; }
  UpType operator()(const ShadowStart&) const { return UpType::kShadowStart; }
  UpType operator()(const ShadowStop&) const { return UpType::kShadowStop; }
  UpType operator()(const CertRenew&) const { return UpType::kCertRenew; }
  UpType operator()(const TrustUpdate&) const { return UpType::kTrustUpdate; }
  UpType operator()(const WakePeer&) const { return UpType::kWakePeer; }
  UpType operator()(const Settings&) const { return UpType::kSettings; }
  UpType operator()(const GatewayStatus&) const { return UpType::kGatewayStatus; }
};

template <typename T>
Result<UpBody> finish(const JsonFieldReader& f, T&& value) {
  TETHER_TRY(f.finish());
  return UpBody{std::forward<T>(value)};
}

}  // namespace

JsonLimits up_json_limits() {
  JsonLimits limits;
  limits.max_bytes = 256 * 1024;
  limits.max_depth = 8;
  limits.max_string_bytes = 16 * 1024;
  limits.max_key_bytes = 64;
  limits.max_array_items = 1024;
  limits.max_object_members = 256;
  limits.max_values = 20000;
  return limits;
}

std::string_view up_type_name(UpType type) noexcept {
  return kTypeNames[static_cast<std::size_t>(type)];
}

std::optional<UpType> up_type_from_name(std::string_view name) noexcept {
  return enum_from<UpType>(name, kTypeNames);
}

std::string_view severity_name(Severity s) noexcept {
  return kSeverityNames[static_cast<std::size_t>(s)];
}
std::string_view command_name(CommandName c) noexcept {
  return kCommandNames[static_cast<std::size_t>(c)];
}
std::string_view viewer_kind_name(ViewerKind k) noexcept {
  return kViewerNames[static_cast<std::size_t>(k)];
}

Result<Envelope> parse_envelope(std::string_view text, const JsonLimits& limits) {
  TETHER_ASSIGN_OR_RETURN(json doc, parse_limited_json(text, limits));
  if (!doc.is_object()) {
    return make_error(Errc::kWrongType,
                      "a message must be a JSON object, not " + std::string(json_type_name(doc)));
  }
  JsonFieldReader f(doc, "");
  Envelope env;
  env.v = static_cast<int>(f.integer("v", 0, 1'000'000));
  TETHER_TRY(f.finish());
  if (env.v != kUpVersion) {
    return make_error(Errc::kBadVersion, "protocol version " + std::to_string(env.v) +
                                             " is not supported (this side speaks " +
                                             std::to_string(kUpVersion) + ")");
  }
  env.type = f.str("type", 32, StringKind::kToken);
  env.id = f.str("id", kMaxMessageIdLength, StringKind::kToken);
  TETHER_TRY(f.finish());
  auto body = doc.find("body");
  if (body == doc.end()) {
    return make_error(Errc::kMissingField, "missing field body");
  }
  if (!body->is_object()) {
    return make_error(Errc::kWrongType,
                      "body must be an object, not " + std::string(json_type_name(*body)));
  }
  env.body = std::move(*body);
  return env;
}

std::string serialize_envelope(const Envelope& envelope) {
  json j = {
      {"v", envelope.v}, {"type", envelope.type}, {"id", envelope.id}, {"body", envelope.body}};
  // Strings that are not valid UTF-8 (from local sources) become U+FFFD instead of throwing.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

UpType up_body_type(const UpBody& body) {
  return std::visit(BodyTyper{}, body);
}

Result<UpBody> decode_body(const Envelope& envelope) {
  const auto type = up_type_from_name(envelope.type);
  if (!type) {
    return make_error(Errc::kUnknownType, "unknown message type \"" + envelope.type + "\"");
  }
  JsonFieldReader f(envelope.body, "body");
  switch (*type) {
    case UpType::kHello: return finish(f, decode_hello(f));
    case UpType::kStatus: return finish(f, decode_status(f));
    case UpType::kInventory: return finish(f, decode_inventory(f));
    case UpType::kEvent: return finish(f, decode_event(f));
    case UpType::kCommand: return finish(f, decode_command(f));
    case UpType::kResult: return finish(f, decode_result(f));
    case UpType::kShadowStart: return finish(f, decode_shadow_start(f));
    case UpType::kShadowStop: return finish(f, decode_shadow_stop(f));
    case UpType::kCertRenew: return finish(f, decode_cert_renew(f));
    case UpType::kTrustUpdate: return finish(f, decode_trust_update(f));
    case UpType::kWakePeer: return finish(f, decode_wake_peer(f, envelope.body));
    case UpType::kSettings: return finish(f, decode_settings(f));
    case UpType::kGatewayStatus: return finish(f, decode_gateway_status(f));
  }
  return make_error(Errc::kUnknownType, "unknown message type \"" + envelope.type + "\"");
}

json encode_body(const UpBody& body) {
  return std::visit(BodyEncoder{}, body);
}

Envelope make_message(std::string id, const UpBody& body) {
  Envelope env;
  env.type = std::string(up_type_name(up_body_type(body)));
  env.id = std::move(id);
  env.body = encode_body(body);
  return env;
}

Envelope make_ok_result(std::string request_id, json data) {
  ResultBody r;
  r.ok = true;
  r.data = std::move(data);
  return make_message(std::move(request_id), r);
}

Envelope make_error_result(std::string request_id, const Error& error) {
  ResultBody r;
  r.ok = false;
  r.error = RemoteError{std::string(errc_name(error.code)), error.message};
  return make_message(std::move(request_id), r);
}

json encode_hello_ack(const HelloAck& ack) {
  json j = {{"server_time", ack.server_time},
            {"status_interval_s", ack.status_interval_s},
            {"device_name", ack.device_name}};
  if (ack.online_key) j["online_key"] = *ack.online_key;
  return j;
}

Result<HelloAck> decode_hello_ack(const json& data) {
  JsonFieldReader f(data, "data");
  HelloAck ack;
  ack.server_time = f.integer("server_time", 0, kMaxTime);
  ack.status_interval_s = f.integer("status_interval_s", 5, 86400);
  ack.device_name = f.opt_str("device_name", 128).value_or("");
  ack.online_key = f.opt_str("online_key", 64, StringKind::kHex64);
  TETHER_TRY(f.finish());
  return ack;
}

json encode_cert_renew_ack(const CertRenewAck& ack) {
  return {{"certificate_pem", ack.certificate_pem},
          {"ca_certificates_pem", ack.ca_certificates_pem}};
}

Result<CertRenewAck> decode_cert_renew_ack(const json& data) {
  JsonFieldReader f(data, "data");
  CertRenewAck ack = decode_cert_renew_ack_fields(f);
  TETHER_TRY(f.finish());
  return ack;
}

}  // namespace tether::protocol
