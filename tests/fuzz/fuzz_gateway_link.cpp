// Messages on the server's link to a gateway, as either side receives them. Anything that
// decodes must re-encode to text that decodes to the same encoding.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocol/GatewayLinkMessage.h"

using namespace tether::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto message = decode_link_message(text);
  if (!message.ok()) return 0;
  const std::string encoded = encode_link_message(*message);
  auto again = decode_link_message(encoded);
  if (!again.ok() || encode_link_message(*again) != encoded) std::abort();
  return 0;
}
