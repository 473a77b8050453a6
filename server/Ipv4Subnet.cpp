#include "server/Ipv4Subnet.h"

#include <arpa/inet.h>

#include <nlohmann/json.hpp>

namespace tether::server {

std::optional<Ipv4Address> parse_ipv4(std::string_view text) {
  if (text.empty() || text.size() > 15) return std::nullopt;
  const std::string copy(text);
  in_addr addr{};
  if (::inet_pton(AF_INET, copy.c_str(), &addr) != 1) return std::nullopt;
  return ntohl(addr.s_addr);
}

std::string ipv4_to_string(Ipv4Address address) {
  in_addr addr{};
  addr.s_addr = htonl(address);
  char buf[INET_ADDRSTRLEN] = {0};
  ::inet_ntop(AF_INET, &addr, buf, sizeof buf);
  return buf;
}

std::optional<Ipv4Address> ipv4_of_peer(std::string_view text) {
  constexpr std::string_view kMapped = "::ffff:";
  if (text.size() > kMapped.size() && text.substr(0, kMapped.size()) == kMapped) {
    text.remove_prefix(kMapped.size());
  }
  if (auto colon = text.find(':'); colon != std::string_view::npos) {
    if (text.find(':', colon + 1) != std::string_view::npos) return std::nullopt;  // IPv6
    text = text.substr(0, colon);
  }
  return parse_ipv4(text);
}

Ipv4Subnet Ipv4Subnet::of(Ipv4Address address, int prefix) {
  Ipv4Subnet s;
  s.prefix = prefix;
  s.network = address & s.mask();
  return s;
}

Result<Ipv4Subnet> Ipv4Subnet::parse(std::string_view cidr) {
  const auto slash = cidr.find('/');
  const auto address = parse_ipv4(cidr.substr(0, slash));
  if (!address) {
    return make_error(Errc::kBadValue,
                      "not an IPv4 address: \"" + std::string(cidr.substr(0, 64)) + "\"");
  }
  int prefix = 32;
  if (slash != std::string_view::npos) {
    const auto digits = cidr.substr(slash + 1);
    if (digits.empty() || digits.size() > 2) {
      return make_error(Errc::kBadValue,
                        "bad prefix length in \"" + std::string(cidr.substr(0, 64)) + "\"");
    }
    prefix = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') {
        return make_error(Errc::kBadValue,
                          "bad prefix length in \"" + std::string(cidr.substr(0, 64)) + "\"");
      }
      prefix = prefix * 10 + (c - '0');
    }
    if (prefix > 32) {
      return make_error(Errc::kBadValue,
                        "prefix length above 32 in \"" + std::string(cidr.substr(0, 64)) + "\"");
    }
  }
  return of(*address, prefix);
}

Ipv4Address Ipv4Subnet::mask() const noexcept {
  return prefix == 0 ? 0 : ~Ipv4Address{0} << (32 - prefix);
}

bool Ipv4Subnet::contains(Ipv4Address address) const noexcept {
  return (address & mask()) == network;
}

Ipv4Address Ipv4Subnet::broadcast() const noexcept {
  if (prefix >= 31) return network;
  return network | ~mask();
}

std::string Ipv4Subnet::to_string() const {
  return ipv4_to_string(network) + "/" + std::to_string(prefix);
}

Result<std::vector<Ipv4Address>> scan_hosts(const Ipv4Subnet& range, int min_prefix) {
  if (range.prefix < min_prefix) {
    return make_error(Errc::kTooLarge, "the range " + range.to_string() +
                                           " is too large: at most /" + std::to_string(min_prefix) +
                                           " per scan");
  }
  std::vector<Ipv4Address> out;
  const std::uint64_t size = std::uint64_t{1} << (32 - range.prefix);
  const bool skip_edges = range.prefix <= 30;
  out.reserve(size);
  for (std::uint64_t i = skip_edges ? 1 : 0; i < (skip_edges ? size - 1 : size); ++i) {
    out.push_back(range.network + static_cast<Ipv4Address>(i));
  }
  return out;
}

namespace {

const nlohmann::json* nics_of(const nlohmann::json& doc) {
  if (!doc.is_object()) return nullptr;
  auto it = doc.find("nics");
  if (it == doc.end() || !it->is_array()) return nullptr;
  return &*it;
}

}  // namespace

std::vector<InventorySubnet> inventory_subnets(const std::string& inventory_json) {
  std::vector<InventorySubnet> out;
  if (inventory_json.empty()) return out;
  const auto doc = nlohmann::json::parse(inventory_json, nullptr, false);
  const auto* nics = nics_of(doc);
  if (nics == nullptr) return out;
  for (const auto& nic : *nics) {
    if (!nic.is_object()) continue;
    std::string mac;
    if (auto m = nic.find("mac"); m != nic.end() && m->is_string()) mac = m->get<std::string>();
    auto addresses = nic.find("addresses");
    if (addresses == nic.end() || !addresses->is_array()) continue;
    for (const auto& a : *addresses) {
      if (!a.is_string()) continue;
      const std::string text = a.get<std::string>();
      if (text.find('/') == std::string::npos) continue;
      auto subnet = Ipv4Subnet::parse(text);
      if (!subnet.ok()) continue;
      const auto address = parse_ipv4(std::string_view(text).substr(0, text.find('/')));
      if (!address) continue;
      if ((*address >> 24) == 127 || (*address >> 16) == 0xA9FE) continue;  // lo, link-local
      out.push_back({*address, *subnet, mac});
    }
  }
  return out;
}

std::vector<std::string> inventory_macs(const std::string& inventory_json) {
  std::vector<std::string> out;
  if (inventory_json.empty()) return out;
  const auto doc = nlohmann::json::parse(inventory_json, nullptr, false);
  const auto* nics = nics_of(doc);
  if (nics == nullptr) return out;
  for (const auto& nic : *nics) {
    if (!nic.is_object()) continue;
    auto m = nic.find("mac");
    if (m != nic.end() && m->is_string() && !m->get<std::string>().empty()) {
      out.push_back(m->get<std::string>());
    }
  }
  return out;
}

}  // namespace tether::server
