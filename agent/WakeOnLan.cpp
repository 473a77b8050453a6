#include "agent/WakeOnLan.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/FileIo.h"
#include "common/UniqueFd.h"
#include "platform/EthtoolClient.h"
#include "protocol/MacAddress.h"
#include "protocol/WakeOnLanPacket.h"

namespace tether::agent {

std::vector<WakePlan> plan_wake_peer(const protocol::WakePeer& request,
                                     std::span<const Ipv4Net> local_subnets) {
  std::vector<WakePlan> out;
  for (const auto& target : request.targets) {
    WakePlan plan;
    plan.mac = target.mac;
    plan.broadcast = target.broadcast;
    auto mac = protocol::MacAddress::parse(target.mac);
    auto ip = parse_ipv4(target.broadcast);
    if (!mac.ok()) {
      plan.error = "not a unicast MAC address: " + target.mac;
    } else if (!ip.ok()) {
      plan.error = "not an IPv4 address: " + target.broadcast;
    } else {
      plan.mac = mac->to_string();
      plan.broadcast_ip = *ip;
      const bool ours = std::any_of(
          local_subnets.begin(), local_subnets.end(),
          [&](const Ipv4Net& net) { return net.mask < 0xFFFFFFFEu && net.broadcast() == *ip; });
      if (!ours) {
        plan.error = target.broadcast +
                     " is not the directed broadcast address of a subnet this device is on";
      }
    }
    out.push_back(std::move(plan));
  }
  return out;
}

DatagramSender broadcast_sender() {
  return [](std::uint32_t ip, std::uint16_t port, std::span<const std::uint8_t> payload) -> Status {
    UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd) return make_error(Errc::kIo, std::string("socket: ") + std::strerror(errno));
    const int on = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_BROADCAST, &on, sizeof on) != 0) {
      return make_error(Errc::kIo, std::string("SO_BROADCAST: ") + std::strerror(errno));
    }
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(ip);
    if (::sendto(fd.get(), payload.data(), payload.size(), MSG_DONTWAIT,
                 reinterpret_cast<const sockaddr*>(&to), sizeof to) < 0) {
      return make_error(Errc::kIo, "sending to " + ipv4_to_string(ip) + ":" + std::to_string(port) +
                                       ": " + std::strerror(errno));
    }
    return {};
  };
}

Result<nlohmann::json> wake_peers(const protocol::WakePeer& request,
                                  std::span<const Ipv4Net> local_subnets,
                                  const DatagramSender& send) {
  std::vector<std::uint16_t> ports;
  for (const auto p : request.ports) {
    if (p >= 1 && p <= 65535) ports.push_back(static_cast<std::uint16_t>(p));
  }
  if (ports.empty()) ports = {9, 7};
  nlohmann::json targets = nlohmann::json::array();
  std::size_t total = 0;
  std::string refusals;
  for (const WakePlan& plan : plan_wake_peer(request, local_subnets)) {
    nlohmann::json t = {{"mac", plan.mac}, {"broadcast", plan.broadcast}};
    if (plan.error.empty()) {
      auto packet = protocol::build_magic_packet(*protocol::MacAddress::parse(plan.mac));
      nlohmann::json sent_ports = nlohmann::json::array();
      std::string failure;
      for (const auto port : ports) {
        auto sent = packet.ok() ? send(plan.broadcast_ip, port, *packet) : Status(packet.error());
        if (sent.ok()) {
          sent_ports.push_back(port);
          ++total;
        } else {
          failure = sent.error().message;
        }
      }
      t["ports"] = sent_ports;
      t["sent"] = sent_ports.size();
      if (!failure.empty()) t["error"] = failure;
    } else {
      t["error"] = plan.error;
      refusals += (refusals.empty() ? "" : "; ") + plan.mac + ": " + plan.error;
    }
    targets.push_back(std::move(t));
  }
  if (total == 0) {
    return make_error(
        Errc::kBadValue,
        "no magic packet sent: " + (refusals.empty() ? std::string("sending failed") : refusals));
  }
  return nlohmann::json{{"targets", targets}, {"sent", total}};
}

std::vector<std::string> wired_nics(const std::string& sys_class_net) {
  std::vector<std::string> out;
  DIR* d = ::opendir(sys_class_net.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == ".." || name == "lo") continue;
    const std::string base = sys_class_net + "/" + name;
    // Physical (a device link), not wireless, Ethernet (type 1).
    if (::access((base + "/device").c_str(), F_OK) != 0) continue;
    if (::access((base + "/wireless").c_str(), F_OK) == 0 ||
        ::access((base + "/phy80211").c_str(), F_OK) == 0) {
      continue;
    }
    auto type = read_file(base + "/type", 4096);  // sysfs files claim 4096 bytes
    if (!type.ok() || !(*type == "1" || *type == "1\n")) continue;
    out.push_back(name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

WolSetupOutcome enable_magic_packet_wake(const std::vector<std::string>& nics) {
  WolSetupOutcome outcome;
  auto client = platform::EthtoolClient::open();
  for (const auto& nic : nics) {
    if (!client.ok()) {
      outcome.unsupported.emplace_back(nic, client.error().message);
      continue;
    }
    auto modes = client->wake_on_lan(nic);
    if (!modes.ok()) {
      outcome.unsupported.emplace_back(nic, modes.error().message);
      continue;
    }
    if (modes->supported.find('g') == std::string::npos) {
      outcome.unsupported.emplace_back(
          nic,
          modes->supported.empty()
              ? nic + " does not support wake-on-LAN"
              : nic + " does not support magic-packet wake-up (supports " + modes->supported + ")");
      continue;
    }
    if (modes->enabled.find('g') != std::string::npos) {
      outcome.enabled.push_back(nic);
      continue;
    }
    std::string want = modes->enabled == "d" ? "" : modes->enabled;
    want += 'g';
    auto set = client->set_wake_on_lan(nic, want);
    if (set.ok()) {
      outcome.enabled.push_back(nic);
    } else {
      outcome.unsupported.emplace_back(nic, set.error().message);
    }
  }
  return outcome;
}

}  // namespace tether::agent
