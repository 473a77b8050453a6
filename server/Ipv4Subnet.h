// IPv4 addresses and subnets as the LAN features (scan ranges, wake-on-LAN targets) use them:
// parsing CIDR text from the command line and from device inventories, membership, directed
// broadcasts, and the bounded list of hosts in a scan range.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/Result.h"

namespace tether::server {

// Host byte order.
using Ipv4Address = std::uint32_t;

[[nodiscard]] std::optional<Ipv4Address> parse_ipv4(std::string_view text);
[[nodiscard]] std::string ipv4_to_string(Ipv4Address address);
// "10.0.0.2", "::ffff:10.0.0.2" and "10.0.0.2:5555" all give 10.0.0.2 (addresses as the
// listener reports peers); nullopt for anything else (IPv6).
[[nodiscard]] std::optional<Ipv4Address> ipv4_of_peer(std::string_view text);

struct Ipv4Subnet {
  Ipv4Address network = 0;  // host bits cleared
  int prefix = 0;           // 0 … 32

  // "10.1.2.3/24" (host bits allowed: an interface address) or "10.1.2.3" (a /32).
  [[nodiscard]] static Result<Ipv4Subnet> parse(std::string_view cidr);
  [[nodiscard]] static Ipv4Subnet of(Ipv4Address address, int prefix);

  [[nodiscard]] Ipv4Address mask() const noexcept;
  [[nodiscard]] bool contains(Ipv4Address address) const noexcept;
  // The directed broadcast (the network itself for /31 and /32, which have none).
  [[nodiscard]] Ipv4Address broadcast() const noexcept;
  [[nodiscard]] std::string to_string() const;  // "10.1.2.0/24"
  friend bool operator==(const Ipv4Subnet&, const Ipv4Subnet&) = default;
};

// The host addresses of a scan range: without the network and broadcast addresses for
// prefixes up to /30. kTooLarge for ranges wider than `min_prefix` (a /16 by default).
[[nodiscard]] Result<std::vector<Ipv4Address>> scan_hosts(const Ipv4Subnet& range,
                                                          int min_prefix = 16);

// The IPv4 subnets in a device's inventory JSON (nics[].addresses), skipping loopback and
// link-local ones and anything unparsable; each with its interface's MAC ("" if none).
struct InventorySubnet {
  Ipv4Address address = 0;  // the device's own address in it
  Ipv4Subnet subnet;
  std::string mac;
};
[[nodiscard]] std::vector<InventorySubnet> inventory_subnets(const std::string& inventory_json);
// The valid-looking MAC strings of an inventory's NICs, as reported (not yet validated).
[[nodiscard]] std::vector<std::string> inventory_macs(const std::string& inventory_json);

}  // namespace tether::server
