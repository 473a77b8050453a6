#include "protocol/UpMessage.h"

#include <gtest/gtest.h>

#include <set>

namespace tether::protocol {
namespace {

using json = nlohmann::json;

const std::string kDeviceId(64, 'a');

Hello sample_hello() {
  return Hello{
      .device_id = kDeviceId,
      .agent_version = "0.1.0",
      .os = {.name = "Debian GNU/Linux", .version = "12", .kernel = "6.1.0", .arch = "x86_64"},
      .hostname = "tc-001",
      .capabilities = {"shadow", "wol", "reboot"}};
}

Inventory sample_inventory() {
  Inventory inv;
  inv.cpu_model = "Intel(R) Celeron(R) J4125";
  inv.cpu_count = 4;
  inv.memory_kb = 8'000'000;
  inv.nics.push_back({.name = "eth0",
                      .mac = "52:54:00:12:34:56",
                      .driver = "e1000e",
                      .link_up = true,
                      .speed_mbps = 1000,
                      .addresses = {"10.1.2.3/24", "fe80::1/64"},
                      .wol_supported = "pumbg",
                      .wol_enabled = "g"});
  inv.nics.push_back({.name = "wlan0",
                      .mac = "",
                      .driver = "",
                      .link_up = false,
                      .speed_mbps = std::nullopt,
                      .addresses = {},
                      .wol_supported = "",
                      .wol_enabled = ""});
  inv.block_devices.push_back(
      {.name = "mmcblk0", .model = "SD", .size_bytes = 32'000'000'000, .removable = false});
  inv.usb_devices.push_back({.vendor_id = "046d",
                             .product_id = "c52b",
                             .manufacturer = "Logitech",
                             .product = "Unifying Receiver",
                             .serial = ""});
  inv.displays.push_back(
      {.connector = "HDMI-A-1", .connected = true, .modes = {"1920x1080", "1280x720"}});
  return inv;
}

std::vector<UpBody> all_samples() {
  std::vector<UpBody> out;
  out.emplace_back(sample_hello());
  out.emplace_back(StatusReport{.uptime_s = 3600,
                                .load1 = 0.25,
                                .mem_total_kb = 8'000'000,
                                .mem_available_kb = 4'000'000,
                                .shadow_sessions = 1});
  out.emplace_back(sample_inventory());
  out.emplace_back(Event{.kind = "shadow.refused",
                         .severity = Severity::kWarning,
                         .message = "the user said no",
                         .time = 1'800'000'000,
                         .data = {{"session_id", "s1"}}});
  out.emplace_back(Command{.name = CommandName::kReboot, .args = json::object()});
  out.emplace_back(Command{.name = CommandName::kPowerOff, .args = {{"delay_s", 5}}});
  out.emplace_back(ResultBody{.ok = true, .error = std::nullopt, .data = {{"x", 1}}});
  out.emplace_back(ResultBody{
      .ok = false, .error = RemoteError{"unknown_type", "nope"}, .data = json::object()});
  out.emplace_back(ShadowStart{.session_id = "sess-1",
                               .tunnel_url = "wss://ums:8443/tunnel/device",
                               .token = "abcDEF123",
                               .view_only = true,
                               .monitor = "HDMI-1",
                               .admin = "alice",
                               .viewer = ViewerKind::kExternal});
  out.emplace_back(ShadowStop{.session_id = "sess-1", .reason = "viewer_closed", .message = ""});
  out.emplace_back(CertRenew{
      .csr_pem = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"});
  out.emplace_back(TrustUpdate{
      .ca_fingerprints = {std::string(64, 'b'), std::string(64, 'c')},
      .ca_certificates_pem = {"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}});
  out.emplace_back(WakePeer{.targets = {{.mac = "52:54:00:12:34:56", .broadcast = "10.1.2.255"}},
                            .ports = {9, 7}});
  out.emplace_back(Settings{.values = {{"shadow.view_only", "true"}, {"discovery.port", "30005"}}});
  out.emplace_back(GatewayStatus{.server_connected = true});
  out.emplace_back(GatewayStatus{.server_connected = false});
  return out;
}

Result<UpBody> round_trip(const UpBody& body) {
  const std::string text = serialize_envelope(make_message("d42", body));
  TETHER_ASSIGN_OR_RETURN(Envelope env, parse_envelope(text));
  if (env.id != "d42") return make_error(Errc::kInternal, "id changed");
  return decode_body(env);
}

// Builds message text with the given type and body.
std::string message(std::string_view type, const json& body) {
  return json{{"v", 1}, {"type", type}, {"id", "x1"}, {"body", body}}.dump();
}

Error decode_error(std::string_view type, const json& body) {
  auto env = parse_envelope(message(type, body));
  if (!env.ok()) return env.error();
  auto decoded = decode_body(*env);
  EXPECT_FALSE(decoded.ok()) << "accepted: " << body.dump();
  return decoded.ok() ? Error{} : decoded.error();
}

TEST(UpMessageTest, EveryMessageRoundTrips) {
  std::set<UpType> covered;
  for (const auto& body : all_samples()) {
    auto again = round_trip(body);
    ASSERT_TRUE(again.ok()) << up_type_name(up_body_type(body)) << ": " << again.error().message;
    EXPECT_EQ(*again, body) << up_type_name(up_body_type(body));
    covered.insert(up_body_type(body));
  }
  EXPECT_EQ(covered.size(), 13u) << "a message type has no round-trip sample";
}

TEST(UpMessageTest, TypeNamesRoundTrip) {
  for (int i = 0; i < 13; ++i) {
    const auto type = static_cast<UpType>(i);
    EXPECT_EQ(up_type_from_name(up_type_name(type)), type);
  }
  EXPECT_EQ(up_type_from_name("bogus"), std::nullopt);
}

TEST(UpMessageTest, ReplyPayloadsRoundTrip) {
  HelloAck ack{.server_time = 1'800'000'000,
               .status_interval_s = 30,
               .device_name = "Front desk",
               .online_key = std::string(64, 'f')};
  EXPECT_EQ(*decode_hello_ack(encode_hello_ack(ack)), ack);
  ack.online_key.reset();
  EXPECT_EQ(*decode_hello_ack(encode_hello_ack(ack)), ack);
  CertRenewAck cert{
      .certificate_pem = "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n",
      .ca_certificates_pem = {"-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n"}};
  EXPECT_EQ(*decode_cert_renew_ack(encode_cert_renew_ack(cert)), cert);
  EXPECT_EQ(decode_cert_renew_ack(json{{"certificate_pem", "garbage"}}).error().code,
            Errc::kBadValue);
  EXPECT_EQ(decode_hello_ack(json{{"server_time", 1}}).error().code, Errc::kMissingField);
}

TEST(UpMessageTest, GatewayStatusIsConnectedOrUnavailable) {
  // The exact text a gateway sends (docs/protocol.md §2.2).
  auto env = parse_envelope(
      R"({"v":1,"type":"gateway_status","id":"g1","body":{"server":"unavailable"}})");
  ASSERT_TRUE(env.ok());
  auto body = decode_body(*env);
  ASSERT_TRUE(body.ok()) << body.error().message;
  EXPECT_EQ(std::get<GatewayStatus>(*body), GatewayStatus{.server_connected = false});
  EXPECT_EQ(encode_body(GatewayStatus{.server_connected = true}), json({{"server", "connected"}}));
  EXPECT_EQ(make_message("g2", GatewayStatus{}).type, "gateway_status");
  EXPECT_EQ(decode_error("gateway_status", json::object()).code, Errc::kMissingField);
  EXPECT_EQ(decode_error("gateway_status", {{"server", true}}).code, Errc::kWrongType);
  EXPECT_EQ(decode_error("gateway_status", {{"server", "up"}}).code, Errc::kBadValue);
}

TEST(UpMessageTest, ResultHelpersCorrelateById) {
  auto ok = make_ok_result("d7", {{"a", 1}});
  EXPECT_EQ(ok.type, "result");
  EXPECT_EQ(ok.id, "d7");
  auto err = make_error_result("d8", make_error(Errc::kPermissionDenied, "policy says no"));
  auto body = std::get<ResultBody>(*decode_body(*parse_envelope(serialize_envelope(err))));
  EXPECT_FALSE(body.ok);
  ASSERT_TRUE(body.error.has_value());
  EXPECT_EQ(body.error->code, "permission_denied");
  EXPECT_EQ(body.error->message, "policy says no");
}

TEST(UpMessageTest, EnvelopeRejections) {
  struct Case {
    std::string text;
    Errc code;
  };
  const std::vector<Case> cases = {
      {"not json", Errc::kSyntax},
      {"[]", Errc::kWrongType},
      {R"({"type":"hello","id":"1","body":{}})", Errc::kMissingField},
      {R"({"v":2,"type":"hello","id":"1","body":{}})", Errc::kBadVersion},
      {R"({"v":"1","type":"hello","id":"1","body":{}})", Errc::kWrongType},
      {R"({"v":1,"id":"1","body":{}})", Errc::kMissingField},
      {R"({"v":1,"type":5,"id":"1","body":{}})", Errc::kWrongType},
      {R"({"v":1,"type":"hello","body":{}})", Errc::kMissingField},
      {R"({"v":1,"type":"hello","id":"a b","body":{}})", Errc::kBadValue},
      {R"({"v":1,"type":"hello","id":")" + std::string(65, 'a') + R"(","body":{}})",
       Errc::kTooLarge},
      {R"({"v":1,"type":"hello","id":"1"})", Errc::kMissingField},
      {R"({"v":1,"type":"hello","id":"1","body":[]})", Errc::kWrongType},
      {R"({"v":1,"v":1,"type":"hello","id":"1","body":{}})", Errc::kDuplicateKey},
      {R"({"v":1,"type":"hello","id":"1","body":{"a":[[[[[[[[[1]]]]]]]]]}})", Errc::kTooDeep},
      {R"({"v":1e999,"type":"hello","id":"1","body":{}})", Errc::kBadValue},
  };
  for (const auto& c : cases) {
    auto env = parse_envelope(c.text);
    ASSERT_FALSE(env.ok()) << c.text;
    EXPECT_EQ(env.error().code, c.code) << c.text << " -> " << env.error().message;
  }
  auto big = parse_envelope(std::string(300 * 1024, ' '));
  EXPECT_EQ(big.error().code, Errc::kTooLarge);
}

TEST(UpMessageTest, UnknownTypeIsReportedWithItsId) {
  auto env = parse_envelope(message("teleport", json::object()));
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->id, "x1");  // so the receiver can answer with an error result
  auto body = decode_body(*env);
  ASSERT_FALSE(body.ok());
  EXPECT_EQ(body.error().code, Errc::kUnknownType);
  EXPECT_NE(body.error().message.find("teleport"), std::string::npos);
}

TEST(UpMessageTest, MissingFieldsAreNamed) {
  json hello = encode_body(sample_hello());
  for (const char* field : {"device_id", "agent_version", "os", "hostname"}) {
    json h = hello;
    h.erase(field);
    auto err = decode_error("hello", h);
    EXPECT_EQ(err.code, Errc::kMissingField) << field;
    EXPECT_NE(err.message.find(std::string("body.") + field), std::string::npos) << err.message;
  }
  json h = hello;
  h["os"].erase("kernel");
  auto err = decode_error("hello", h);
  EXPECT_EQ(err.code, Errc::kMissingField);
  EXPECT_NE(err.message.find("body.os.kernel"), std::string::npos);
  // null counts as missing.
  h = hello;
  h["hostname"] = nullptr;
  EXPECT_EQ(decode_error("hello", h).code, Errc::kMissingField);
}

TEST(UpMessageTest, WrongTypesAreNamed) {
  json h = encode_body(sample_hello());
  h["hostname"] = 42;
  auto err = decode_error("hello", h);
  EXPECT_EQ(err.code, Errc::kWrongType);
  EXPECT_NE(err.message.find("body.hostname must be a string, not integer"), std::string::npos)
      << err.message;
  h = encode_body(sample_hello());
  h["capabilities"] = "shadow";
  EXPECT_EQ(decode_error("hello", h).code, Errc::kWrongType);
  h = encode_body(sample_hello());
  h["os"] = "linux";
  EXPECT_EQ(decode_error("hello", h).code, Errc::kWrongType);

  json s = encode_body(all_samples()[1]);
  s["uptime_s"] = 1.5;
  EXPECT_EQ(decode_error("status", s).code, Errc::kWrongType);
  s["uptime_s"] = true;
  EXPECT_EQ(decode_error("status", s).code, Errc::kWrongType);

  json inv = encode_body(sample_inventory());
  inv["nics"][1] = "eth1";
  err = decode_error("inventory", inv);
  EXPECT_EQ(err.code, Errc::kWrongType);
  EXPECT_NE(err.message.find("body.nics[1]"), std::string::npos);
  inv = encode_body(sample_inventory());
  inv["nics"][0]["link_up"] = "yes";
  err = decode_error("inventory", inv);
  EXPECT_EQ(err.code, Errc::kWrongType);
  EXPECT_NE(err.message.find("body.nics[0].link_up"), std::string::npos);

  json r = {{"ok", "true"}};
  EXPECT_EQ(decode_error("result", r).code, Errc::kWrongType);
}

TEST(UpMessageTest, BadValuesAreRefused) {
  json h = encode_body(sample_hello());
  h["device_id"] = std::string(64, 'A');  // upper case is not the canonical id
  EXPECT_EQ(decode_error("hello", h).code, Errc::kBadValue);
  h["device_id"] = std::string(63, 'a');
  EXPECT_EQ(decode_error("hello", h).code, Errc::kBadValue);
  h = encode_body(sample_hello());
  h["hostname"] = "evil\nhost";
  EXPECT_EQ(decode_error("hello", h).code, Errc::kBadValue);
  h = encode_body(sample_hello());
  h["capabilities"] = {"has space"};
  EXPECT_EQ(decode_error("hello", h).code, Errc::kBadValue);

  json s = encode_body(all_samples()[1]);
  s["uptime_s"] = -1;
  EXPECT_EQ(decode_error("status", s).code, Errc::kBadValue);
  s["uptime_s"] = 18446744073709551615ull;
  EXPECT_EQ(decode_error("status", s).code, Errc::kBadValue);

  json inv = encode_body(sample_inventory());
  inv["nics"][0]["mac"] = "ff:ff:ff:ff:ff:ff";
  EXPECT_EQ(decode_error("inventory", inv).code, Errc::kBadValue);
  inv = encode_body(sample_inventory());
  inv["nics"][0]["wol_enabled"] = "gx";
  EXPECT_EQ(decode_error("inventory", inv).code, Errc::kBadValue);

  EXPECT_EQ(decode_error("command", {{"name", "format_disk"}}).code, Errc::kBadValue);
  EXPECT_EQ(
      decode_error("event", {{"kind", "k"}, {"severity", "panic"}, {"message", ""}, {"time", 0}})
          .code,
      Errc::kBadValue);

  json ss = encode_body(all_samples()[8]);
  ss["tunnel_url"] = "http://evil/";
  EXPECT_EQ(decode_error("shadow_start", ss).code, Errc::kBadValue);
  ss = encode_body(all_samples()[8]);
  ss["viewer"] = "telepathy";
  EXPECT_EQ(decode_error("shadow_start", ss).code, Errc::kBadValue);
  ss = encode_body(all_samples()[8]);
  ss["token"] = "has/slash";
  EXPECT_EQ(decode_error("shadow_start", ss).code, Errc::kBadValue);

  EXPECT_EQ(decode_error("cert_renew", {{"csr_pem", "MIIB"}}).code, Errc::kBadValue);
  EXPECT_EQ(decode_error("trust_update", {{"ca_fingerprints", json::array()}}).code,
            Errc::kBadValue);
  EXPECT_EQ(decode_error("trust_update", {{"ca_fingerprints", {"abc"}}}).code, Errc::kBadValue);

  json w = encode_body(all_samples()[12]);
  w["targets"][0]["mac"] = "01:00:5e:00:00:01";
  EXPECT_EQ(decode_error("wake_peer", w).code, Errc::kBadValue);
  w = encode_body(all_samples()[12]);
  w["targets"][0]["broadcast"] = "10.1.2";
  EXPECT_EQ(decode_error("wake_peer", w).code, Errc::kBadValue);
  w = encode_body(all_samples()[12]);
  w["ports"] = {0};
  EXPECT_EQ(decode_error("wake_peer", w).code, Errc::kBadValue);
  w = encode_body(all_samples()[12]);
  w["targets"] = json::array();
  EXPECT_EQ(decode_error("wake_peer", w).code, Errc::kBadValue);

  EXPECT_EQ(decode_error("settings", {{"values", {{"bad key", "x"}}}}).code, Errc::kBadValue);
  EXPECT_EQ(decode_error("settings", {{"values", {{"a.b", 1}}}}).code, Errc::kWrongType);
  EXPECT_EQ(decode_error("result", {{"ok", false}}).code, Errc::kMissingField);
}

TEST(UpMessageTest, OversizedFieldsAreRefused) {
  json h = encode_body(sample_hello());
  h["hostname"] = std::string(254, 'h');
  auto err = decode_error("hello", h);
  EXPECT_EQ(err.code, Errc::kTooLarge);
  EXPECT_NE(err.message.find("body.hostname is 254 bytes"), std::string::npos);
  h = encode_body(sample_hello());
  h["capabilities"] = json::array();
  for (int i = 0; i < 33; ++i) h["capabilities"].push_back("c" + std::to_string(i));
  EXPECT_EQ(decode_error("hello", h).code, Errc::kTooLarge);

  json inv = encode_body(sample_inventory());
  inv["displays"] = json::array();
  for (int i = 0; i < 65; ++i) inv["displays"].push_back({{"connector", "X"}});
  EXPECT_EQ(decode_error("inventory", inv).code, Errc::kTooLarge);

  // A string beyond the message-level limit is refused by the parser itself.
  json big = encode_body(sample_hello());
  big["hostname"] = std::string(17 * 1024, 'h');
  auto env = parse_envelope(message("hello", big));
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.error().code, Errc::kTooLarge);
}

TEST(UpMessageTest, UnknownFieldsAreIgnoredForForwardCompatibility) {
  json h = encode_body(sample_hello());
  h["future_field"] = {{"anything", 1}};
  auto env = parse_envelope(message("hello", h));
  ASSERT_TRUE(env.ok());
  auto body = decode_body(*env);
  ASSERT_TRUE(body.ok()) << body.error().message;
  EXPECT_EQ(std::get<Hello>(*body), sample_hello());
}

TEST(UpMessageTest, SerializeReplacesInvalidUtf8InsteadOfThrowing) {
  Hello h = sample_hello();
  h.hostname = "bad\xff";
  std::string text;
  EXPECT_NO_THROW(text = serialize_envelope(make_message("d1", h)));
  EXPECT_TRUE(parse_envelope(text).ok());
}

}  // namespace
}  // namespace tether::protocol
