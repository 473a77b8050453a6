// The one-time join token an admin hands to a new gateway (`tetherctl gateway add`):
//
//   tether-gw1.<base64url of {"v":1,"n":NAME,"u":SERVER URL,"f":CA FINGERPRINT,"s":SECRET}>
//
// Like the enrollment token it carries everything the gateway needs to join safely: its
// name, where the server is (contacted once, for the join), which CA to trust (checked
// before the secret is sent), and the single-use secret.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/Result.h"

namespace tether::protocol {

inline constexpr std::string_view kGatewayJoinTokenPrefix = "tether-gw1.";
inline constexpr std::size_t kGatewayJoinSecretBytes = 32;
inline constexpr std::size_t kMaxGatewayJoinTokenLength = 1024;
inline constexpr std::size_t kMaxGatewayNameLength = 32;

struct GatewayJoinToken {
  std::string name;            // [a-z0-9-]{1,32}
  std::string server_url;      // canonical wss://host:port (https:// is accepted in tokens)
  std::string ca_fingerprint;  // SHA-256 of the installation CA certificate (DER), hex
  std::string secret;          // base64url of 32 bytes, 43 characters
  friend bool operator==(const GatewayJoinToken&, const GatewayJoinToken&) = default;
};

// Errors: kBadValue, naming the part that is wrong.
[[nodiscard]] Result<GatewayJoinToken> parse_gateway_join_token(std::string_view text);
// Assumes a valid token (the server builds it from validated parts).
[[nodiscard]] std::string format_gateway_join_token(const GatewayJoinToken& token);

// A gateway name: 1-32 of [a-z0-9-].
[[nodiscard]] bool valid_gateway_name(std::string_view name) noexcept;

// The server URL of a join token: wss:// or https:// HOST[:PORT] (parse_server_url's rules),
// in canonical wss://host:port form.
[[nodiscard]] Result<std::string> canonical_join_server_url(std::string_view text);

}  // namespace tether::protocol
