// Discovery datagrams (UDP/TCP port 30005): scan, online check and registration request,
// and their replies. Binary, big-endian, versioned; layout in docs/protocol.md §3.
//
// Safety rule built into the codec: a reply is encoded against the size of the probe it
// answers and is refused when it would be larger, so the responder can never amplify.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "common/Result.h"
#include "protocol/MacAddress.h"

namespace tether::protocol {

inline constexpr std::array<std::uint8_t, 4> kDiscoveryMagic = {'T', 'T', 'H', 'D'};
inline constexpr std::uint8_t kDiscoveryVersion = 1;
inline constexpr std::size_t kDiscoveryHeaderSize = 16;
// Nothing on this protocol is larger; a bigger datagram is rejected before decoding.
inline constexpr std::size_t kMaxDatagramSize = 1200;
inline constexpr std::size_t kAuthenticatorSize = 32;  // HMAC-SHA256

using Sha256 = std::array<std::uint8_t, 32>;

enum class DatagramType : std::uint8_t {
  kScanProbe = 1,
  kScanReply = 2,
  kOnlineProbe = 3,
  kOnlineReply = 4,
  kRegisterRequest = 5,
  kRegisterReply = 6,
  kTokenRequest = 7,  // device -> server, TCP 30001 only
  kTokenReply = 8,    // server -> device, TCP 30001 only
};

struct ScanProbe {
  std::uint64_t nonce = 0;
  std::uint16_t reply_port = 0;
  std::uint16_t padding = 0;  // zero bytes appended so that the reply fits
  friend bool operator==(const ScanProbe&, const ScanProbe&) = default;
};

struct ScanReply {
  std::uint64_t nonce = 0;  // echoed from the probe
  bool registered = false;
  bool accepts_registration = false;
  MacAddress::Bytes mac{};                   // of the interface that received the probe
  std::string unit_id;                       // <= 64 bytes
  std::string hostname;                      // <= 253 bytes
  std::string product;                       // <= 64 bytes
  std::string version;                       // <= 64 bytes
  std::optional<Sha256> server_fingerprint;  // present iff registered
  friend bool operator==(const ScanReply&, const ScanReply&) = default;
};

struct OnlineProbe {
  std::uint64_t nonce = 0;
  std::uint16_t reply_port = 0;
  Sha256 device_id{};           // the device asked about
  std::uint64_t timestamp = 0;  // unix seconds, bounds replay of an authenticated probe
  std::optional<std::array<std::uint8_t, kAuthenticatorSize>> authenticator;
  std::uint16_t padding = 0;
  // Bytes the authenticator covers (filled by the decoder; the encoder computes its own).
  std::vector<std::uint8_t> signed_bytes;
  friend bool operator==(const OnlineProbe& a, const OnlineProbe& b) {
    return a.nonce == b.nonce && a.reply_port == b.reply_port && a.device_id == b.device_id &&
           a.timestamp == b.timestamp && a.authenticator == b.authenticator &&
           a.padding == b.padding;
  }
};

struct OnlineReply {
  std::uint64_t nonce = 0;
  bool online = true;
  Sha256 device_id{};
  std::optional<std::array<std::uint8_t, kAuthenticatorSize>> authenticator;
  std::vector<std::uint8_t> signed_bytes;  // filled by the decoder
  friend bool operator==(const OnlineReply& a, const OnlineReply& b) {
    return a.nonce == b.nonce && a.online == b.online && a.device_id == b.device_id &&
           a.authenticator == b.authenticator;
  }
};

struct RegisterRequest {
  std::uint64_t nonce = 0;
  std::uint16_t reply_port = 0;         // UDP only; 0 over TCP (the reply uses the stream)
  std::uint16_t registration_port = 0;  // where the server takes token requests (30001)
  Sha256 server_fingerprint{};          // SHA-256 of the installation CA certificate (DER)
  std::string server_host;              // <= 253 bytes; empty: the request's source address
  std::uint16_t padding = 0;
  friend bool operator==(const RegisterRequest&, const RegisterRequest&) = default;
};

enum class RegisterStatus : std::uint8_t {
  kAccepted = 0,             // the device will ask for a token
  kAlreadyRegistered = 1,    // to this server: nothing to do
  kRegisteredElsewhere = 2,  // refused
  kDisabled = 3,             // refused by local configuration
  kBusy = 4,                 // an enrollment is already running
};

struct RegisterReply {
  std::uint64_t nonce = 0;
  RegisterStatus status = RegisterStatus::kAccepted;
  MacAddress::Bytes mac{};
  friend bool operator==(const RegisterReply&, const RegisterReply&) = default;
};

// A device asks the server that found it (or that it found by DNS) for an enrollment token.
struct TokenRequest {
  std::uint64_t nonce = 0;
  Sha256 device_id{};           // SHA-256 of the device key's SPKI
  MacAddress::Bytes mac{};      // the interface the request leaves from
  std::string hostname;         // <= 253 bytes
  std::string unit_id;          // <= 64 bytes
  Sha256 server_fingerprint{};  // the CA the device expects (from the register request;
                                // all zero for auto-registration, which has none)
  friend bool operator==(const TokenRequest&, const TokenRequest&) = default;
};

enum class TokenStatus : std::uint8_t {
  kIssued = 0,       // token follows
  kDisabled = 1,     // the server does not register this device (no pending request, and
                     // auto-registration is off)
  kRefused = 2,      // rate limited or otherwise refused
  kWrongServer = 3,  // the fingerprint is not this server's CA
};

struct TokenReply {
  std::uint64_t nonce = 0;  // echoed
  TokenStatus status = TokenStatus::kIssued;
  std::string token;  // <= 255 bytes; present iff issued
  friend bool operator==(const TokenReply&, const TokenReply&) = default;
};

using Datagram = std::variant<ScanProbe, ScanReply, OnlineProbe, OnlineReply, RegisterRequest,
                              RegisterReply, TokenRequest, TokenReply>;

// On TCP (ports 30005 and 30001) each datagram is framed with a two-byte big-endian length.
inline constexpr std::size_t kTcpFrameHeader = 2;
[[nodiscard]] std::vector<std::uint8_t> frame_for_tcp(std::span<const std::uint8_t> datagram);
// The length of the first complete frame's datagram in `buffer`, nullopt when more bytes are
// needed; kTooLarge when the announced length exceeds kMaxDatagramSize (or is 0).
[[nodiscard]] Result<std::optional<std::size_t>> tcp_frame_length(
    std::span<const std::uint8_t> buffer);

// Probes and requests: always encodable once their fields are within limits.
[[nodiscard]] Result<std::vector<std::uint8_t>> encode_scan_probe(const ScanProbe& probe);
[[nodiscard]] Result<std::vector<std::uint8_t>> encode_register_request(const RegisterRequest& req);
// With a key, the probe carries an authenticator over its signed bytes.
[[nodiscard]] Result<std::vector<std::uint8_t>> encode_online_probe(
    const OnlineProbe& probe, std::span<const std::uint8_t> key = {});

[[nodiscard]] Result<std::vector<std::uint8_t>> encode_token_request(const TokenRequest& req);
// TCP only: no size rule applies (it answers on a connection, not to a spoofable source).
[[nodiscard]] Result<std::vector<std::uint8_t>> encode_token_reply(const TokenReply& reply);

// Replies: refused with kTooLarge when they would exceed `max_size` (the probe's size).
[[nodiscard]] Result<std::vector<std::uint8_t>> encode_scan_reply(const ScanReply& reply,
                                                                  std::size_t max_size);
[[nodiscard]] Result<std::vector<std::uint8_t>> encode_online_reply(
    const OnlineReply& reply, std::size_t max_size, std::span<const std::uint8_t> key = {});
[[nodiscard]] Result<std::vector<std::uint8_t>> encode_register_reply(const RegisterReply& reply,
                                                                      std::size_t max_size);

// Decodes any discovery datagram. Rejects: bigger than kMaxDatagramSize, truncation at any
// offset, bad magic, unknown version or type, over-long strings, non-zero padding and
// trailing bytes.
[[nodiscard]] Result<Datagram> decode_datagram(std::span<const std::uint8_t> data);

// HMAC-SHA256 over `signed_bytes`, compared in constant time.
[[nodiscard]] std::array<std::uint8_t, kAuthenticatorSize> compute_authenticator(
    std::span<const std::uint8_t> key, std::span<const std::uint8_t> signed_bytes);
[[nodiscard]] bool verify_authenticator(std::span<const std::uint8_t> key,
                                        std::span<const std::uint8_t> signed_bytes,
                                        std::span<const std::uint8_t> authenticator);

[[nodiscard]] std::string_view datagram_type_name(DatagramType type) noexcept;

}  // namespace tether::protocol
