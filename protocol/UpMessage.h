// The Unified Protocol (UP): JSON text messages over one WebSocket between a device and its
// server (or gateway). Every message is an envelope {v, type, id, body}; a reply is a
// "result" message that carries the id of the request it answers. Field by field in
// docs/protocol.md §2.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/Result.h"
#include "protocol/LimitedJsonParser.h"

namespace tether::protocol {

inline constexpr int kUpVersion = 1;
inline constexpr std::size_t kMaxMessageIdLength = 64;
// The WebSocket subprotocol names negotiated on the channel and on shadowing tunnels.
inline constexpr const char* kUpSubprotocol = "tether.up.v1";
inline constexpr const char* kTunnelSubprotocol = "tether.tunnel.v1";
// Close codes and reasons on UP channels (docs/protocol.md §2.3).
inline constexpr int kCloseServiceRestart = 1012;
inline constexpr const char* kRestartCloseReason = "server restarting";
inline constexpr int kCloseReplaced = 4000;  // a newer channel of the same device took over
inline constexpr int kCloseRevoked = 4003;   // the device was revoked

// True for a close that announces a server restart or shutdown. libwebsockets 4.1.6
// rewrites a received 1012 to 1002 (its list of valid codes predates 1012) but keeps the
// reason, so 1002 with the restart reason counts too.
[[nodiscard]] inline bool is_restart_close(int code, std::string_view reason) {
  return code == kCloseServiceRestart || code == 1001 ||
         (code == 1002 && reason == kRestartCloseReason);
}

// Limits for UP messages. Inventory is the largest legitimate message (a few KiB for a
// typical device); 256 KiB leaves ample room while bounding what a peer can make us hold.
[[nodiscard]] JsonLimits up_json_limits();

enum class UpType {
  kHello,          // device -> server, request
  kStatus,         // device -> server
  kInventory,      // device -> server
  kEvent,          // device -> server
  kCommand,        // server -> device, request
  kResult,         // either way: the reply to a request
  kShadowStart,    // server -> device, request
  kShadowStop,     // either way
  kCertRenew,      // device -> server, request
  kTrustUpdate,    // server -> device, request
  kWakePeer,       // server -> device, request
  kSettings,       // server -> device, request
  kGatewayStatus,  // gateway -> device: its link to the server is up or down
};

[[nodiscard]] std::string_view up_type_name(UpType type) noexcept;
[[nodiscard]] std::optional<UpType> up_type_from_name(std::string_view name) noexcept;

struct Envelope {
  int v = kUpVersion;
  std::string type;  // kept as text so that an unknown type can still be answered by id
  std::string id;
  nlohmann::json body = nlohmann::json::object();
};

// Parses the envelope: limits, v == 1, type a token, id a token of at most 64 bytes, body an
// object. Does not look inside the body.
[[nodiscard]] Result<Envelope> parse_envelope(std::string_view text,
                                              const JsonLimits& limits = up_json_limits());
[[nodiscard]] std::string serialize_envelope(const Envelope& envelope);

// ---- Bodies -------------------------------------------------------------------------------

struct OsInfo {
  std::string name;     // "Debian GNU/Linux"
  std::string version;  // "12"
  std::string kernel;   // "6.1.0-18-amd64"
  std::string arch;     // "x86_64"
  friend bool operator==(const OsInfo&, const OsInfo&) = default;
};

struct Hello {
  std::string device_id;  // SHA-256 of the device key's SPKI, 64 hex digits
  std::string agent_version;
  OsInfo os;
  std::string hostname;
  std::vector<std::string> capabilities;  // "shadow", "wol", "reboot", ...
  friend bool operator==(const Hello&, const Hello&) = default;
};

// The data of the result that answers hello.
struct HelloAck {
  std::int64_t server_time = 0;  // unix seconds
  std::int64_t status_interval_s = 60;
  std::string device_name;                // the name the admin gave the device (may be empty)
  std::optional<std::string> online_key;  // 64 hex digits: key for authenticated online checks
  friend bool operator==(const HelloAck&, const HelloAck&) = default;
};

struct StatusReport {
  std::int64_t uptime_s = 0;
  double load1 = 0;
  std::int64_t mem_total_kb = 0;
  std::int64_t mem_available_kb = 0;
  std::int64_t shadow_sessions = 0;
  friend bool operator==(const StatusReport&, const StatusReport&) = default;
};

struct NicInfo {
  std::string name;
  std::string mac;  // canonical aa:bb:cc:dd:ee:ff, or empty when the interface has none
  std::string driver;
  bool link_up = false;
  std::optional<std::int64_t> speed_mbps;
  std::vector<std::string> addresses;  // CIDR, "10.1.2.3/24", "fe80::1/64"
  std::string wol_supported;           // ethtool letters, "pumbg"; empty: none or unknown
  std::string wol_enabled;             // ethtool letters, "g"; "d" or empty: disabled
  friend bool operator==(const NicInfo&, const NicInfo&) = default;
};

struct BlockDeviceInfo {
  std::string name;
  std::string model;
  std::int64_t size_bytes = 0;
  bool removable = false;
  friend bool operator==(const BlockDeviceInfo&, const BlockDeviceInfo&) = default;
};

struct UsbDeviceInfo {
  std::string vendor_id;   // 4 hex digits
  std::string product_id;  // 4 hex digits
  std::string manufacturer;
  std::string product;
  std::string serial;
  friend bool operator==(const UsbDeviceInfo&, const UsbDeviceInfo&) = default;
};

struct DisplayInfo {
  std::string connector;  // "HDMI-A-1"
  bool connected = false;
  std::vector<std::string> modes;  // "1920x1080"
  friend bool operator==(const DisplayInfo&, const DisplayInfo&) = default;
};

struct Inventory {
  std::string cpu_model;
  std::int64_t cpu_count = 0;
  std::int64_t memory_kb = 0;
  std::vector<NicInfo> nics;
  std::vector<BlockDeviceInfo> block_devices;
  std::vector<UsbDeviceInfo> usb_devices;
  std::vector<DisplayInfo> displays;
  friend bool operator==(const Inventory&, const Inventory&) = default;
};

enum class Severity { kDebug, kInfo, kNotice, kWarning, kError };
[[nodiscard]] std::string_view severity_name(Severity s) noexcept;

struct Event {
  std::string kind;  // token: "shadow.prompt", "wol.unsupported", ...
  Severity severity = Severity::kInfo;
  std::string message;
  std::int64_t time = 0;  // unix seconds
  nlohmann::json data = nlohmann::json::object();
  friend bool operator==(const Event&, const Event&) = default;
};

enum class CommandName { kReboot, kPowerOff, kRefreshInventory, kGetSettings };
[[nodiscard]] std::string_view command_name(CommandName c) noexcept;

struct Command {
  CommandName name = CommandName::kReboot;
  nlohmann::json args = nlohmann::json::object();
  friend bool operator==(const Command&, const Command&) = default;
};

// An error as it travels in a result: the code is an errc_name() string, kept as text since
// a newer peer may send codes this side does not know.
struct RemoteError {
  std::string code;
  std::string message;
  friend bool operator==(const RemoteError&, const RemoteError&) = default;
};

struct ResultBody {
  bool ok = true;
  std::optional<RemoteError> error;                // present iff !ok
  nlohmann::json data = nlohmann::json::object();  // the reply's payload when ok
  friend bool operator==(const ResultBody&, const ResultBody&) = default;
};

enum class ViewerKind { kBrowser, kExternal };
[[nodiscard]] std::string_view viewer_kind_name(ViewerKind k) noexcept;

struct ShadowStart {
  std::string session_id;
  std::string tunnel_url;  // wss://host:port/path where the device opens its tunnel
  std::string token;       // one-time device-side token for that tunnel
  bool view_only = false;
  std::string monitor;  // "" for the whole desktop, else an XRandR output name
  std::string admin;    // who asked, shown to the device's user
  ViewerKind viewer = ViewerKind::kBrowser;
  friend bool operator==(const ShadowStart&, const ShadowStart&) = default;
};

struct ShadowStop {
  std::string session_id;
  std::string reason;   // token: "viewer_closed", "admin", "user", "policy", "vnc_exited", ...
  std::string message;  // human-readable detail, may be empty
  friend bool operator==(const ShadowStop&, const ShadowStop&) = default;
};

struct CertRenew {
  std::string csr_pem;
  friend bool operator==(const CertRenew&, const CertRenew&) = default;
};

// The data of the result that answers cert_renew.
struct CertRenewAck {
  std::string certificate_pem;
  std::vector<std::string> ca_certificates_pem;
  friend bool operator==(const CertRenewAck&, const CertRenewAck&) = default;
};

struct TrustUpdate {
  std::vector<std::string> ca_fingerprints;      // 64 hex digits each: the full trusted set
  std::vector<std::string> ca_certificates_pem;  // the certificates themselves
  friend bool operator==(const TrustUpdate&, const TrustUpdate&) = default;
};

struct WakeTarget {
  std::string mac;        // canonical form
  std::string broadcast;  // IPv4 directed broadcast of the target's subnet
  friend bool operator==(const WakeTarget&, const WakeTarget&) = default;
};

struct WakePeer {
  std::vector<WakeTarget> targets;
  std::vector<std::int64_t> ports;  // default {9, 7}
  friend bool operator==(const WakePeer&, const WakePeer&) = default;
};

struct Settings {
  std::map<std::string, std::string> values;  // "section.key" -> value, as in the INI file
  friend bool operator==(const Settings&, const Settings&) = default;
};

// From a gateway in front of the device (docs/protocol.md §2.2): whether the gateway's link to
// the server is up. Not a request; nothing answers it.
struct GatewayStatus {
  bool server_connected = false;  // "server": "connected" | "unavailable"
  friend bool operator==(const GatewayStatus&, const GatewayStatus&) = default;
};

using UpBody = std::variant<Hello, StatusReport, Inventory, Event, Command, ResultBody, ShadowStart,
                            ShadowStop, CertRenew, TrustUpdate, WakePeer, Settings, GatewayStatus>;

[[nodiscard]] UpType up_body_type(const UpBody& body);

// Decodes the body of an envelope according to its type. Errors: kUnknownType,
// kMissingField, kWrongType, kBadValue, kTooLarge, each naming the field.
[[nodiscard]] Result<UpBody> decode_body(const Envelope& envelope);
[[nodiscard]] nlohmann::json encode_body(const UpBody& body);

// Builds a message envelope with the given id.
[[nodiscard]] Envelope make_message(std::string id, const UpBody& body);
[[nodiscard]] Envelope make_ok_result(std::string request_id,
                                      nlohmann::json data = nlohmann::json::object());
[[nodiscard]] Envelope make_error_result(std::string request_id, const Error& error);

// Reply payloads carried in ResultBody::data.
[[nodiscard]] nlohmann::json encode_hello_ack(const HelloAck& ack);
[[nodiscard]] Result<HelloAck> decode_hello_ack(const nlohmann::json& data);
[[nodiscard]] nlohmann::json encode_cert_renew_ack(const CertRenewAck& ack);
[[nodiscard]] Result<CertRenewAck> decode_cert_renew_ack(const nlohmann::json& data);

}  // namespace tether::protocol
