#include "protocol/DiscoveryDatagram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "protocol/ByteCursor.h"

namespace tether::protocol {
namespace {

constexpr std::size_t kMaxUnitId = 64;
constexpr std::size_t kMaxHostname = 253;
constexpr std::size_t kMaxProductField = 64;

void write_header(ByteWriter& w, DatagramType type, std::uint64_t nonce) {
  w.bytes(kDiscoveryMagic);
  w.u8(kDiscoveryVersion);
  w.u8(static_cast<std::uint8_t>(type));
  w.u16(0);  // flags: reserved, zero in v1
  w.u64(nonce);
}

Status check_len(std::string_view field, const std::string& value, std::size_t max) {
  if (value.size() > max) {
    return make_error(Errc::kTooLarge, std::string(field) + " is " + std::to_string(value.size()) +
                                           " bytes, more than " + std::to_string(max));
  }
  return {};
}

Status fits(std::string_view what, std::size_t size, std::size_t max_size) {
  if (size > max_size) {
    return make_error(Errc::kTooLarge, std::string(what) + " would be " + std::to_string(size) +
                                           " bytes, larger than the " + std::to_string(max_size) +
                                           "-byte probe it answers");
  }
  return {};
}

void write_padding(ByteWriter& w, std::uint16_t padding) {
  w.u16(padding);
  w.zeros(padding);
}

Result<std::uint16_t> read_padding(ByteReader& r) {
  TETHER_ASSIGN_OR_RETURN(std::uint16_t len, r.u16("padding length"));
  TETHER_ASSIGN_OR_RETURN(auto pad, r.bytes(len, "padding"));
  for (std::uint8_t b : pad) {
    if (b != 0) return make_error(Errc::kBadValue, "padding must be zero bytes");
  }
  return len;
}

Result<Sha256> read_sha256(ByteReader& r, std::string_view field) {
  TETHER_ASSIGN_OR_RETURN(auto raw, r.bytes(32, field));
  Sha256 out{};
  std::copy(raw.begin(), raw.end(), out.begin());
  return out;
}

Result<std::optional<std::array<std::uint8_t, kAuthenticatorSize>>> read_authenticator(
    ByteReader& r) {
  TETHER_ASSIGN_OR_RETURN(std::uint8_t len, r.u8("authenticator length"));
  if (len == 0) return std::optional<std::array<std::uint8_t, kAuthenticatorSize>>{};
  if (len != kAuthenticatorSize) {
    return make_error(Errc::kBadValue,
                      "authenticator length must be 0 or 32, not " + std::to_string(len));
  }
  TETHER_ASSIGN_OR_RETURN(auto raw, r.bytes(kAuthenticatorSize, "authenticator"));
  std::array<std::uint8_t, kAuthenticatorSize> out{};
  std::copy(raw.begin(), raw.end(), out.begin());
  return std::optional(out);
}

Status expect_end(const ByteReader& r) {
  if (r.remaining() != 0) {
    return make_error(Errc::kTrailingData, std::to_string(r.remaining()) +
                                               " unexpected bytes after the datagram at offset " +
                                               std::to_string(r.offset()));
  }
  return {};
}

// Writes the authenticator length (and authenticator, when keyed) after the signed bytes.
void sign(ByteWriter& w, std::span<const std::uint8_t> key) {
  if (key.empty()) {
    w.u8(0);
    return;
  }
  w.u8(kAuthenticatorSize);
  const auto mac = compute_authenticator(key, w.buffer());
  w.bytes(mac);
}

}  // namespace

std::array<std::uint8_t, kAuthenticatorSize> compute_authenticator(
    std::span<const std::uint8_t> key, std::span<const std::uint8_t> signed_bytes) {
  std::array<std::uint8_t, kAuthenticatorSize> out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), signed_bytes.data(),
       signed_bytes.size(), out.data(), &len);
  return out;
}

bool verify_authenticator(std::span<const std::uint8_t> key,
                          std::span<const std::uint8_t> signed_bytes,
                          std::span<const std::uint8_t> authenticator) {
  if (key.empty() || authenticator.size() != kAuthenticatorSize) return false;
  const auto expected = compute_authenticator(key, signed_bytes);
  return CRYPTO_memcmp(expected.data(), authenticator.data(), kAuthenticatorSize) == 0;
}

std::string_view datagram_type_name(DatagramType type) noexcept {
  switch (type) {
    case DatagramType::kScanProbe: return "scan_probe";
    case DatagramType::kScanReply: return "scan_reply";
    case DatagramType::kOnlineProbe: return "online_probe";
    case DatagramType::kOnlineReply: return "online_reply";
    case DatagramType::kRegisterRequest: return "register_request";
    case DatagramType::kRegisterReply: return "register_reply";
    case DatagramType::kTokenRequest: return "token_request";
    case DatagramType::kTokenReply: return "token_reply";
  }
  return "unknown";
}

Result<std::vector<std::uint8_t>> encode_scan_probe(const ScanProbe& probe) {
  ByteWriter w;
  write_header(w, DatagramType::kScanProbe, probe.nonce);
  w.u16(probe.reply_port);
  write_padding(w, probe.padding);
  TETHER_TRY(fits("scan probe", w.size(), kMaxDatagramSize));
  return std::move(w).take();
}

Result<std::vector<std::uint8_t>> encode_scan_reply(const ScanReply& reply, std::size_t max_size) {
  TETHER_TRY(check_len("unit id", reply.unit_id, kMaxUnitId));
  TETHER_TRY(check_len("hostname", reply.hostname, kMaxHostname));
  TETHER_TRY(check_len("product", reply.product, kMaxProductField));
  TETHER_TRY(check_len("version", reply.version, kMaxProductField));
  if (reply.registered != reply.server_fingerprint.has_value()) {
    return make_error(Errc::kInvalidArgument,
                      "a scan reply carries a server fingerprint exactly when registered");
  }
  ByteWriter w;
  write_header(w, DatagramType::kScanReply, reply.nonce);
  w.u8(
      static_cast<std::uint8_t>((reply.registered ? 1 : 0) | (reply.accepts_registration ? 2 : 0)));
  w.bytes(reply.mac);
  w.short_string(reply.unit_id);
  w.short_string(reply.hostname);
  w.short_string(reply.product);
  w.short_string(reply.version);
  if (reply.server_fingerprint) w.bytes(*reply.server_fingerprint);
  TETHER_TRY(fits("scan reply", w.size(), std::min(max_size, kMaxDatagramSize)));
  return std::move(w).take();
}

Result<std::vector<std::uint8_t>> encode_online_probe(const OnlineProbe& probe,
                                                      std::span<const std::uint8_t> key) {
  ByteWriter w;
  write_header(w, DatagramType::kOnlineProbe, probe.nonce);
  w.u16(probe.reply_port);
  w.bytes(probe.device_id);
  w.u64(probe.timestamp);
  sign(w, key);
  write_padding(w, probe.padding);
  TETHER_TRY(fits("online probe", w.size(), kMaxDatagramSize));
  return std::move(w).take();
}

Result<std::vector<std::uint8_t>> encode_online_reply(const OnlineReply& reply,
                                                      std::size_t max_size,
                                                      std::span<const std::uint8_t> key) {
  ByteWriter w;
  write_header(w, DatagramType::kOnlineReply, reply.nonce);
  w.u8(reply.online ? 1 : 0);
  w.bytes(reply.device_id);
  sign(w, key);
  TETHER_TRY(fits("online reply", w.size(), std::min(max_size, kMaxDatagramSize)));
  return std::move(w).take();
}

Result<std::vector<std::uint8_t>> encode_register_request(const RegisterRequest& req) {
  TETHER_TRY(check_len("server host", req.server_host, kMaxHostname));
  ByteWriter w;
  write_header(w, DatagramType::kRegisterRequest, req.nonce);
  w.u16(req.reply_port);
  w.u16(req.registration_port);
  w.bytes(req.server_fingerprint);
  w.short_string(req.server_host);
  write_padding(w, req.padding);
  TETHER_TRY(fits("register request", w.size(), kMaxDatagramSize));
  return std::move(w).take();
}

Result<std::vector<std::uint8_t>> encode_token_request(const TokenRequest& req) {
  TETHER_TRY(check_len("hostname", req.hostname, kMaxHostname));
  TETHER_TRY(check_len("unit id", req.unit_id, kMaxUnitId));
  ByteWriter w;
  write_header(w, DatagramType::kTokenRequest, req.nonce);
  w.bytes(req.device_id);
  w.bytes(req.mac);
  w.short_string(req.hostname);
  w.short_string(req.unit_id);
  w.bytes(req.server_fingerprint);
  return std::move(w).take();
}

Result<std::vector<std::uint8_t>> encode_token_reply(const TokenReply& reply) {
  TETHER_TRY(check_len("token", reply.token, 255));
  if ((reply.status == TokenStatus::kIssued) == reply.token.empty()) {
    return make_error(Errc::kInvalidArgument, "a token reply carries a token exactly when issued");
  }
  ByteWriter w;
  write_header(w, DatagramType::kTokenReply, reply.nonce);
  w.u8(static_cast<std::uint8_t>(reply.status));
  w.short_string(reply.token);
  return std::move(w).take();
}

std::vector<std::uint8_t> frame_for_tcp(std::span<const std::uint8_t> datagram) {
  std::vector<std::uint8_t> out;
  out.reserve(datagram.size() + kTcpFrameHeader);
  out.push_back(static_cast<std::uint8_t>(datagram.size() >> 8));
  out.push_back(static_cast<std::uint8_t>(datagram.size()));
  out.insert(out.end(), datagram.begin(), datagram.end());
  return out;
}

Result<std::optional<std::size_t>> tcp_frame_length(std::span<const std::uint8_t> buffer) {
  if (buffer.size() < kTcpFrameHeader) return std::optional<std::size_t>{};
  const std::size_t len = (static_cast<std::size_t>(buffer[0]) << 8) | buffer[1];
  if (len == 0 || len > kMaxDatagramSize) {
    return make_error(Errc::kTooLarge, "a framed datagram of " + std::to_string(len) +
                                           " bytes is not allowed (1 to " +
                                           std::to_string(kMaxDatagramSize) + ")");
  }
  if (buffer.size() < kTcpFrameHeader + len) return std::optional<std::size_t>{};
  return std::optional<std::size_t>(len);
}

Result<std::vector<std::uint8_t>> encode_register_reply(const RegisterReply& reply,
                                                        std::size_t max_size) {
  ByteWriter w;
  write_header(w, DatagramType::kRegisterReply, reply.nonce);
  w.u8(static_cast<std::uint8_t>(reply.status));
  w.bytes(reply.mac);
  TETHER_TRY(fits("register reply", w.size(), std::min(max_size, kMaxDatagramSize)));
  return std::move(w).take();
}

Result<Datagram> decode_datagram(std::span<const std::uint8_t> data) {
  if (data.size() > kMaxDatagramSize) {
    return make_error(Errc::kTooLarge, "datagram of " + std::to_string(data.size()) +
                                           " bytes is larger than " +
                                           std::to_string(kMaxDatagramSize));
  }
  ByteReader r(data);
  TETHER_ASSIGN_OR_RETURN(auto magic, r.bytes(4, "magic"));
  if (!std::equal(magic.begin(), magic.end(), kDiscoveryMagic.begin())) {
    return make_error(Errc::kBadMagic, "not a Tether discovery datagram (bad magic)");
  }
  TETHER_ASSIGN_OR_RETURN(std::uint8_t version, r.u8("version"));
  if (version != kDiscoveryVersion) {
    return make_error(Errc::kBadVersion, "discovery protocol version " + std::to_string(version) +
                                             " is not supported");
  }
  TETHER_ASSIGN_OR_RETURN(std::uint8_t type, r.u8("type"));
  TETHER_ASSIGN_OR_RETURN(std::uint16_t flags, r.u16("flags"));
  (void)flags;  // reserved: receivers ignore it so later versions can use it
  TETHER_ASSIGN_OR_RETURN(std::uint64_t nonce, r.u64("nonce"));

  switch (static_cast<DatagramType>(type)) {
    case DatagramType::kScanProbe: {
      ScanProbe p;
      p.nonce = nonce;
      TETHER_ASSIGN_OR_RETURN(p.reply_port, r.u16("reply port"));
      TETHER_ASSIGN_OR_RETURN(p.padding, read_padding(r));
      TETHER_TRY(expect_end(r));
      return Datagram{p};
    }
    case DatagramType::kScanReply: {
      ScanReply s;
      s.nonce = nonce;
      TETHER_ASSIGN_OR_RETURN(std::uint8_t bits, r.u8("flags"));
      if ((bits & ~0x03) != 0) return make_error(Errc::kBadValue, "unknown scan reply flags");
      s.registered = (bits & 1) != 0;
      s.accepts_registration = (bits & 2) != 0;
      TETHER_ASSIGN_OR_RETURN(auto mac, r.bytes(6, "mac"));
      std::copy(mac.begin(), mac.end(), s.mac.begin());
      TETHER_ASSIGN_OR_RETURN(s.unit_id, r.short_string("unit id", kMaxUnitId));
      TETHER_ASSIGN_OR_RETURN(s.hostname, r.short_string("hostname", kMaxHostname));
      TETHER_ASSIGN_OR_RETURN(s.product, r.short_string("product", kMaxProductField));
      TETHER_ASSIGN_OR_RETURN(s.version, r.short_string("version", kMaxProductField));
      if (s.registered) {
        TETHER_ASSIGN_OR_RETURN(s.server_fingerprint, read_sha256(r, "server fingerprint"));
      }
      TETHER_TRY(expect_end(r));
      return Datagram{std::move(s)};
    }
    case DatagramType::kOnlineProbe: {
      OnlineProbe p;
      p.nonce = nonce;
      TETHER_ASSIGN_OR_RETURN(p.reply_port, r.u16("reply port"));
      TETHER_ASSIGN_OR_RETURN(p.device_id, read_sha256(r, "device id"));
      TETHER_ASSIGN_OR_RETURN(p.timestamp, r.u64("timestamp"));
      const std::size_t signed_end = r.offset() + 1;  // the length byte is signed too
      TETHER_ASSIGN_OR_RETURN(p.authenticator, read_authenticator(r));
      p.signed_bytes.assign(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(signed_end));
      TETHER_ASSIGN_OR_RETURN(p.padding, read_padding(r));
      TETHER_TRY(expect_end(r));
      return Datagram{std::move(p)};
    }
    case DatagramType::kOnlineReply: {
      OnlineReply o;
      o.nonce = nonce;
      TETHER_ASSIGN_OR_RETURN(std::uint8_t state, r.u8("state"));
      if (state > 1) return make_error(Errc::kBadValue, "online state must be 0 or 1");
      o.online = state == 1;
      TETHER_ASSIGN_OR_RETURN(o.device_id, read_sha256(r, "device id"));
      const std::size_t signed_end = r.offset() + 1;
      TETHER_ASSIGN_OR_RETURN(o.authenticator, read_authenticator(r));
      o.signed_bytes.assign(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(signed_end));
      TETHER_TRY(expect_end(r));
      return Datagram{std::move(o)};
    }
    case DatagramType::kRegisterRequest: {
      RegisterRequest q;
      q.nonce = nonce;
      TETHER_ASSIGN_OR_RETURN(q.reply_port, r.u16("reply port"));
      TETHER_ASSIGN_OR_RETURN(q.registration_port, r.u16("registration port"));
      if (q.registration_port == 0) {
        return make_error(Errc::kBadValue, "registration port must not be 0");
      }
      TETHER_ASSIGN_OR_RETURN(q.server_fingerprint, read_sha256(r, "server fingerprint"));
      TETHER_ASSIGN_OR_RETURN(q.server_host, r.short_string("server host", kMaxHostname));
      TETHER_ASSIGN_OR_RETURN(q.padding, read_padding(r));
      TETHER_TRY(expect_end(r));
      return Datagram{std::move(q)};
    }
    case DatagramType::kRegisterReply: {
      RegisterReply rr;
      rr.nonce = nonce;
      TETHER_ASSIGN_OR_RETURN(std::uint8_t status, r.u8("status"));
      if (status > static_cast<std::uint8_t>(RegisterStatus::kBusy)) {
        return make_error(Errc::kBadValue, "unknown registration status " + std::to_string(status));
      }
      rr.status = static_cast<RegisterStatus>(status);
      TETHER_ASSIGN_OR_RETURN(auto mac, r.bytes(6, "mac"));
      std::copy(mac.begin(), mac.end(), rr.mac.begin());
      TETHER_TRY(expect_end(r));
      return Datagram{rr};
    }
    case DatagramType::kTokenRequest: {
      TokenRequest t;
      t.nonce = nonce;
      TETHER_ASSIGN_OR_RETURN(t.device_id, read_sha256(r, "device id"));
      TETHER_ASSIGN_OR_RETURN(auto mac, r.bytes(6, "mac"));
      std::copy(mac.begin(), mac.end(), t.mac.begin());
      TETHER_ASSIGN_OR_RETURN(t.hostname, r.short_string("hostname", kMaxHostname));
      TETHER_ASSIGN_OR_RETURN(t.unit_id, r.short_string("unit id", kMaxUnitId));
      TETHER_ASSIGN_OR_RETURN(t.server_fingerprint, read_sha256(r, "server fingerprint"));
      TETHER_TRY(expect_end(r));
      return Datagram{std::move(t)};
    }
    case DatagramType::kTokenReply: {
      TokenReply t;
      t.nonce = nonce;
      TETHER_ASSIGN_OR_RETURN(std::uint8_t status, r.u8("status"));
      if (status > static_cast<std::uint8_t>(TokenStatus::kWrongServer)) {
        return make_error(Errc::kBadValue, "unknown token status " + std::to_string(status));
      }
      t.status = static_cast<TokenStatus>(status);
      TETHER_ASSIGN_OR_RETURN(t.token, r.short_string("token", 255));
      if ((t.status == TokenStatus::kIssued) == t.token.empty()) {
        return make_error(Errc::kBadValue, "a token reply carries a token exactly when issued");
      }
      TETHER_TRY(expect_end(r));
      return Datagram{std::move(t)};
    }
  }
  return make_error(Errc::kUnknownType, "unknown discovery datagram type " + std::to_string(type));
}

}  // namespace tether::protocol
