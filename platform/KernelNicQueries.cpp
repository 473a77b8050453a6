#include "platform/KernelNicQueries.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <memory>

namespace tether::platform {
namespace {

struct IfaddrsFree {
  void operator()(ifaddrs* list) const noexcept { ::freeifaddrs(list); }
};

// The prefix length of a netmask: its count of one bits (masks are contiguous).
int prefix_length(const unsigned char* mask, std::size_t bytes) {
  int bits = 0;
  for (std::size_t i = 0; i < bytes; ++i) bits += std::popcount(static_cast<unsigned>(mask[i]));
  return bits;
}

}  // namespace

Result<std::map<std::string, std::vector<std::string>>> KernelNicQueries::addresses() {
  ifaddrs* raw = nullptr;
  if (::getifaddrs(&raw) != 0) {
    return make_error(Errc::kIo,
                      std::string("cannot list interface addresses: ") + std::strerror(errno));
  }
  const std::unique_ptr<ifaddrs, IfaddrsFree> list(raw);
  std::map<std::string, std::vector<std::string>> out;
  for (const ifaddrs* a = list.get(); a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_name == nullptr) continue;
    char text[INET6_ADDRSTRLEN] = {};
    int prefix = 0;
    if (a->ifa_addr->sa_family == AF_INET) {
      sockaddr_in addr{};
      std::memcpy(&addr, a->ifa_addr, sizeof addr);
      if (::inet_ntop(AF_INET, &addr.sin_addr, text, sizeof text) == nullptr) continue;
      if (a->ifa_netmask != nullptr) {
        sockaddr_in mask{};
        std::memcpy(&mask, a->ifa_netmask, sizeof mask);
        prefix = prefix_length(reinterpret_cast<const unsigned char*>(&mask.sin_addr), 4);
      }
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      sockaddr_in6 addr{};
      std::memcpy(&addr, a->ifa_addr, sizeof addr);
      if (::inet_ntop(AF_INET6, &addr.sin6_addr, text, sizeof text) == nullptr) continue;
      if (a->ifa_netmask != nullptr) {
        sockaddr_in6 mask{};
        std::memcpy(&mask, a->ifa_netmask, sizeof mask);
        prefix = prefix_length(reinterpret_cast<const unsigned char*>(&mask.sin6_addr), 16);
      }
    } else {
      continue;  // AF_PACKET entries carry statistics, not addresses
    }
    out[a->ifa_name].push_back(std::string(text) + "/" + std::to_string(prefix));
  }
  return out;
}

Result<const EthtoolClient*> KernelNicQueries::ethtool() {
  if (!ethtool_) {
    auto client = EthtoolClient::open();
    if (!client.ok()) return std::move(client).error();
    ethtool_.emplace(std::move(client).value());
  }
  return &*ethtool_;
}

Result<WakeOnLanModes> KernelNicQueries::wake_on_lan(const std::string& ifname) {
  TETHER_ASSIGN_OR_RETURN(const EthtoolClient* client, ethtool());
  return client->wake_on_lan(ifname);
}

std::string KernelNicQueries::driver_name(const std::string& ifname) {
  auto client = ethtool();
  if (!client.ok()) return {};
  return (*client)->driver_name(ifname).value_or(std::string());
}

}  // namespace tether::platform
