// Enrollment tokens are pasted by admins onto a device's command line (`tether-agent enroll
// TOKEN`) and sent back by devices in the open enroll request: whatever parses names a
// canonical server URL, a hex CA fingerprint and a 32-byte secret, and formats and parses
// again to the same token.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/Base64.h"
#include "common/Hex.h"
#include "protocol/EnrollmentToken.h"

using namespace tether;
using namespace tether::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // The server URL parser on its own (agent.conf's server.url and the token's first part).
  if (auto url = parse_server_url(text); url.ok()) {
    auto again = parse_server_url(url->to_string());
    if (!again.ok() || again->to_string() != url->to_string()) std::abort();
  }
  auto token = parse_enrollment_token(text);
  if (!token.ok()) return 0;
  auto url = parse_server_url(token->server_url);
  if (!url.ok() || url->to_string() != token->server_url) std::abort();
  if (token->ca_fingerprint.size() != 64 || !is_lower_hex(token->ca_fingerprint)) std::abort();
  auto secret = base64url_decode(token->secret);
  if (!secret.ok() || secret->size() != kEnrollmentSecretBytes) std::abort();
  const std::string formatted = format_enrollment_token(*token);
  if (formatted.size() > kMaxEnrollmentTokenLength) std::abort();
  auto again = parse_enrollment_token(formatted);
  if (!again.ok() || !(*again == *token)) std::abort();
  return 0;
}
