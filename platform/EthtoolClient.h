// Wake-on-LAN and driver queries through the kernel's ethtool ioctl (SIOCETHTOOL), the same
// interface the ethtool program uses, without running it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/Result.h"
#include "common/UniqueFd.h"

namespace tether::platform {

// Wake-on-LAN modes as ethtool's letters: p (PHY activity), u (unicast), m (multicast),
// b (broadcast), a (ARP), g (magic packet), s (magic packet with SecureOn password),
// f (filter); d means disabled.
struct WakeOnLanModes {
  std::string supported;  // letters; empty when the interface supports none or cannot say
  std::string enabled;    // letters, "d" when none is enabled; empty when unsupported
  friend bool operator==(const WakeOnLanModes&, const WakeOnLanModes&) = default;
};

// The letters for a WAKE_* bit mask, in ethtool's order ("pumbagsf"); "" for 0.
[[nodiscard]] std::string wake_on_lan_letters(std::uint32_t wolopts);
// The WAKE_* mask for letters; "d" alone is 0. Errors (kInvalidArgument): an unknown letter,
// "d" together with other letters, an empty string.
[[nodiscard]] Result<std::uint32_t> wake_on_lan_mask(std::string_view letters);

class EthtoolClient {
 public:
  // Opens the AF_INET datagram socket the ioctls go through. Interface names are looked up in
  // the network namespace the process is in at this moment.
  [[nodiscard]] static Result<EthtoolClient> open();

  // Supported and enabled modes (ETHTOOL_GWOL). An interface whose driver does not implement
  // the query (veth, bridges, most virtual NICs) gives empty strings, not an error. Errors:
  // kInvalidArgument (bad name), kNotFound (no such interface), kIo.
  [[nodiscard]] Result<WakeOnLanModes> wake_on_lan(const std::string& ifname) const;

  // Enables exactly `modes` (letters as above; "d" turns wake-on-LAN off) with ETHTOOL_SWOL.
  // Checks the modes against what the interface supports first, so the error says which
  // mode is missing ("eth0 does not support wake-on-LAN mode g"). Errors: kInvalidArgument,
  // kNotFound, kUnavailable (not supported), kPermissionDenied (needs CAP_NET_ADMIN), kIo.
  [[nodiscard]] Status set_wake_on_lan(const std::string& ifname, std::string_view modes) const;

  // The driver's name (ETHTOOL_GDRVINFO): "e1000e", "veth", "bridge". Errors as above, and
  // kUnavailable when the interface does not answer the query.
  [[nodiscard]] Result<std::string> driver_name(const std::string& ifname) const;

 private:
  explicit EthtoolClient(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// Convenience for one-off use: opens a client and sets the modes.
[[nodiscard]] Status set_wake_on_lan(const std::string& ifname, std::string_view modes);

}  // namespace tether::platform
