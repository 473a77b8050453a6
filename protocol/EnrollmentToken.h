// The one-time enrollment token an admin hands to a device:
//
//   tether1.<base64url(server URL)>.<CA fingerprint, 64 hex>.<secret, base64url of 32 bytes>
//
// It carries everything the device needs to enroll safely: where the server is, which CA to
// trust (checked before the secret is sent), and the single-use secret.
#pragma once

#include <string>
#include <string_view>

#include "common/Result.h"

namespace tether::protocol {

inline constexpr std::string_view kEnrollmentTokenPrefix = "tether1.";
inline constexpr std::size_t kEnrollmentSecretBytes = 32;
inline constexpr std::size_t kMaxEnrollmentTokenLength = 1024;

struct EnrollmentToken {
  std::string server_url;      // "wss://host:port", no path
  std::string ca_fingerprint;  // SHA-256 of the installation CA certificate (DER), hex
  std::string secret;          // base64url, 43 characters
  friend bool operator==(const EnrollmentToken&, const EnrollmentToken&) = default;
};

[[nodiscard]] Result<EnrollmentToken> parse_enrollment_token(std::string_view text);
// Assumes a valid token (the server builds it from validated parts).
[[nodiscard]] std::string format_enrollment_token(const EnrollmentToken& token);

// A server base URL: wss://HOST[:PORT] with HOST a DNS name, IPv4, or [IPv6]; no user info,
// path, query or fragment (a trailing "/" is tolerated and dropped).
struct ServerUrl {
  std::string host;  // without brackets
  std::uint16_t port = 8443;
  [[nodiscard]] std::string to_string() const;  // canonical wss://host:port
};
[[nodiscard]] Result<ServerUrl> parse_server_url(std::string_view text);

}  // namespace tether::protocol
