#include "protocol/WakeOnLanPacket.h"

#include <algorithm>

namespace tether::protocol {

Result<std::vector<std::uint8_t>> build_magic_packet(const MacAddress& target,
                                                     std::span<const std::uint8_t> password) {
  if (!password.empty() && password.size() != 4 && password.size() != 6) {
    return make_error(Errc::kBadValue, "a SecureOn password is 4 or 6 bytes, not " +
                                           std::to_string(password.size()));
  }
  std::vector<std::uint8_t> packet;
  packet.reserve(kMagicPacketSize + password.size());
  packet.insert(packet.end(), 6, 0xff);
  for (int i = 0; i < 16; ++i) {
    packet.insert(packet.end(), target.bytes().begin(), target.bytes().end());
  }
  packet.insert(packet.end(), password.begin(), password.end());
  return packet;
}

bool is_magic_packet_for(std::span<const std::uint8_t> payload, const MacAddress& target) {
  const std::size_t n = payload.size();
  if (n != kMagicPacketSize && n != kMagicPacketSize + 4 && n != kMagicPacketSize + 6) {
    return false;
  }
  if (!std::all_of(payload.begin(), payload.begin() + 6,
                   [](std::uint8_t b) { return b == 0xff; })) {
    return false;
  }
  for (std::size_t i = 0; i < 16; ++i) {
    if (!std::equal(target.bytes().begin(), target.bytes().end(), payload.begin() + 6 + 6 * i)) {
      return false;
    }
  }
  return true;
}

}  // namespace tether::protocol
