// What the inventory learns about network interfaces from the kernel rather than from sysfs
// files: addresses (getifaddrs) and ethtool answers. Behind an interface so that tests over
// a fake sysfs tree can supply them; KernelNicQueries is the real one.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/Result.h"
#include "platform/EthtoolClient.h"

namespace tether::platform {

class NicQueries {
 public:
  virtual ~NicQueries() = default;

  // IPv4 and IPv6 addresses in CIDR form ("10.1.2.3/24", "fe80::1/64"), by interface name.
  [[nodiscard]] virtual Result<std::map<std::string, std::vector<std::string>>> addresses() = 0;
  // Wake-on-LAN modes; empty strings when the interface cannot say (no error then).
  [[nodiscard]] virtual Result<WakeOnLanModes> wake_on_lan(const std::string& ifname) = 0;
  // The driver's name, for interfaces whose sysfs entry has no device/driver link (veth,
  // bridge, tun); empty when unknown.
  [[nodiscard]] virtual std::string driver_name(const std::string& ifname) = 0;
};

}  // namespace tether::platform
