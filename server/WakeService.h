// Wake-on-LAN (tetherctl wake, POST /api/v1/wake): for each device, magic packets from the
// server to its last known address and its subnet's directed broadcast (UDP 9 and 7), and a
// wake_peer request to one online agent in the same subnet, because directed broadcasts
// rarely cross routers. Devices are woken at a bounded rate; the answer says, per device,
// what was sent and by whom, or why nothing could be, and whether it came online in time.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/LwsLoop.h"
#include "server/DatagramSocket.h"
#include "server/Ipv4Subnet.h"
#include "server/LiveDevices.h"
#include "server/Store.h"

namespace tether::server {

// What to send for one device, from what the server knows (pure; tested on its own).
struct WakePlan {
  struct Relay {
    std::string device_id;
    std::string hostname;
    Ipv4Subnet subnet;
  };
  std::vector<std::string> macs;            // valid, canonical
  std::vector<std::string> problems;        // malformed MACs, addresses outside known subnets, ...
  std::vector<Ipv4Subnet> subnets;          // from the device's inventory
  std::vector<Ipv4Address> server_targets;  // last known address (if in a subnet), broadcasts
  std::vector<Relay> relays;                // one online agent per subnet that has one
  std::vector<std::string> no_relay;        // "no agent online in 10.1.2.0/24"
  // Why nothing at all can be sent ("" when something can).
  std::string refusal;
};

// `online_peers`: devices whose UP channel is up (the target itself is skipped).
[[nodiscard]] WakePlan plan_wake(const DeviceRecord& target,
                                 const std::vector<DeviceRecord>& online_peers);

// When the i-th device of a bulk wake is due, at `rate` devices per second.
[[nodiscard]] std::chrono::milliseconds wake_offset(std::size_t index, double rate) noexcept;

class WakeService {
 public:
  using Done = std::function<void(nlohmann::json results)>;

  WakeService(lws_context* context, DatagramSocket& socket, Store& store, LiveDevices& live,
              double rate_per_second);
  ~WakeService();
  WakeService(const WakeService&) = delete;
  WakeService& operator=(const WakeService&) = delete;

  // `done` gets one result per id (docs/api.md) after the last device's wait.
  void wake(const std::vector<std::string>& ids, std::chrono::milliseconds wait, Done done);

 private:
  struct Target;
  struct Job;
  void tick(Job& job);
  void send(Job& job, Target& target);
  void reap();

  lws_context* context_;
  DatagramSocket& socket_;
  Store& store_;
  LiveDevices& live_;
  double rate_;
  std::list<std::unique_ptr<Job>> jobs_;
  std::list<std::unique_ptr<Job>> finished_;
  std::unique_ptr<LwsTimer> reaper_;
};

}  // namespace tether::server
