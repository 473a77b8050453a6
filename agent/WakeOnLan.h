// The agent's wake-on-LAN duties: turning magic-packet wake-up ("g") on for its wired NICs
// (wol.enable = magic) and sending magic packets for peers when the server asks (wake_peer),
// only to the directed broadcast of one of the device's own subnets.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/DiscoveryPolicy.h"
#include "common/Result.h"
#include "protocol/UpMessage.h"

namespace tether::agent {

// One wake target after validation.
struct WakePlan {
  std::string mac;        // canonical
  std::string broadcast;  // dotted quad
  std::uint32_t broadcast_ip = 0;
  std::string error;  // non-empty: refused, with the reason
};

// Checks each target: a valid unicast MAC, and a broadcast that is the directed broadcast of
// one of `local_subnets` (subnets of /31 and /32 have none). Returns one plan per target, in
// order; refused targets carry the reason in `error`.
[[nodiscard]] std::vector<WakePlan> plan_wake_peer(const protocol::WakePeer& request,
                                                   std::span<const Ipv4Net> local_subnets);

// Sends one datagram; the real one uses a UDP socket with SO_BROADCAST.
using DatagramSender = std::function<Status(std::uint32_t ip, std::uint16_t port,
                                            std::span<const std::uint8_t> payload)>;
[[nodiscard]] DatagramSender broadcast_sender();

// Plans and sends: magic packets to broadcast:port for every port (default 9 and 7) of every
// accepted target. The ok data: {"targets": [{"mac", "broadcast", "ports": [...], "sent": n}
// | {"mac", "broadcast", "error"}], "sent": total}. An error (kBadValue) when no target was
// accepted, naming every refusal.
[[nodiscard]] Result<nlohmann::json> wake_peers(const protocol::WakePeer& request,
                                                std::span<const Ipv4Net> local_subnets,
                                                const DatagramSender& send);

// Wired NICs with a MAC (not loopback, not wireless, not virtual: they have a device link in
// sysfs), by name, from `sys_class_net` (normally /sys/class/net).
[[nodiscard]] std::vector<std::string> wired_nics(const std::string& sys_class_net);

struct WolSetupOutcome {
  std::vector<std::string> enabled;                              // names now waking on "g"
  std::vector<std::pair<std::string, std::string>> unsupported;  // name, why
};
// Turns on "g" for each wired NIC through ethtool (keeping other enabled modes).
[[nodiscard]] WolSetupOutcome enable_magic_packet_wake(const std::vector<std::string>& nics);

}  // namespace tether::agent
