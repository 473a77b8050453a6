// A unicast Ethernet MAC address, as the agent reports it and wake-on-LAN targets it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/Result.h"

namespace tether::protocol {

class MacAddress {
 public:
  using Bytes = std::array<std::uint8_t, 6>;

  // Accepts "aa:bb:cc:dd:ee:ff", "aa-bb-cc-dd-ee-ff" (either case, one separator kind
  // throughout) and "aabbccddeeff". Rejects anything else, and the addresses that can never
  // name one NIC: all-zero, broadcast and multicast (group bit set).
  [[nodiscard]] static Result<MacAddress> parse(std::string_view text);
  // Same checks for raw bytes (from a datagram or an ioctl).
  [[nodiscard]] static Result<MacAddress> from_bytes(const Bytes& bytes);

  [[nodiscard]] const Bytes& bytes() const noexcept { return bytes_; }
  // Canonical form: lower case, colon separated.
  [[nodiscard]] std::string to_string() const;

  friend bool operator==(const MacAddress&, const MacAddress&) = default;
  friend auto operator<=>(const MacAddress&, const MacAddress&) = default;

 private:
  explicit MacAddress(const Bytes& bytes) : bytes_(bytes) {}
  Bytes bytes_{};
};

}  // namespace tether::protocol
