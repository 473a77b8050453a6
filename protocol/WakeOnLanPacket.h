// The wake-on-LAN "magic packet": 6 x 0xFF, the target MAC 16 times, and an optional
// SecureOn password of 4 or 6 bytes. Sent as a UDP payload to ports 9 and 7.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/Result.h"
#include "protocol/MacAddress.h"

namespace tether::protocol {

inline constexpr std::size_t kMagicPacketSize = 102;

[[nodiscard]] Result<std::vector<std::uint8_t>> build_magic_packet(
    const MacAddress& target, std::span<const std::uint8_t> secureon_password = {});

// True when `payload` is a magic packet for `target` (with or without a password); used by
// tests and by a capturing peer to recognise what it saw.
[[nodiscard]] bool is_magic_packet_for(std::span<const std::uint8_t> payload,
                                       const MacAddress& target);

}  // namespace tether::protocol
