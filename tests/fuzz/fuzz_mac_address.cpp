// MAC addresses typed by admins and sent by peers: whatever parses prints canonically and
// parses again to the same address.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocol/MacAddress.h"
#include "protocol/WakeOnLanPacket.h"

using namespace tether::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto mac = MacAddress::parse(text);
  if (!mac.ok()) return 0;
  auto again = MacAddress::parse(mac->to_string());
  if (!again.ok() || !(*again == *mac)) std::abort();
  auto packet = build_magic_packet(*mac);
  if (!packet.ok() || !is_magic_packet_for(*packet, *mac)) std::abort();
  return 0;
}
