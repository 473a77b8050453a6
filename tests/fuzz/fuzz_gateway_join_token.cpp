// Gateway join tokens are pasted by admins onto a gateway's command line: whatever parses
// formats and parses again to the same token, and names a valid gateway and server URL.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocol/EnrollmentToken.h"
#include "protocol/GatewayJoinToken.h"

using namespace tether::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto token = parse_gateway_join_token(text);
  if (!token.ok()) return 0;
  if (!valid_gateway_name(token->name) || !parse_server_url(token->server_url).ok()) std::abort();
  auto again = parse_gateway_join_token(format_gateway_join_token(*token));
  if (!again.ok() || !(*again == *token)) std::abort();
  return 0;
}
