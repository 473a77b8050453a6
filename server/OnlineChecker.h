// Online checks (tetherctl online, POST /api/v1/online, and a periodic round for devices
// whose UP channel is down): a device with its channel up is online; otherwise the server
// sends an authenticated online probe (HMAC with the device's online_key, docs/protocol.md
// §3.4) to its last known addresses on port 30005 and waits for a reply whose authenticator
// verifies. Replies that do not verify are counted as forged and never make a device online.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/LwsLoop.h"
#include "server/DatagramSocket.h"
#include "server/LiveDevices.h"
#include "server/Store.h"

namespace tether::server {

// The IPv4 addresses to probe for a device: its last channel's address, then its inventory's.
[[nodiscard]] std::vector<Ipv4Address> device_probe_addresses(const DeviceRecord& device);

class OnlineChecker {
 public:
  using Done = std::function<void(nlohmann::json results)>;

  OnlineChecker(lws_context* context, DatagramSocket& socket, Store& store, LiveDevices& live,
                std::uint16_t device_port, std::chrono::seconds background_interval);
  ~OnlineChecker();
  OnlineChecker(const OnlineChecker&) = delete;
  OnlineChecker& operator=(const OnlineChecker&) = delete;

  // `done` gets one result per id, in order (docs/api.md), when all are known or at the
  // timeout; it may run before check() returns.
  void check(const std::vector<std::string>& ids, std::chrono::milliseconds timeout, Done done);

  // When the device last answered an online probe (unix seconds), 0 if never since start.
  [[nodiscard]] std::int64_t last_seen_udp(const std::string& id) const;

 private:
  struct Probe;
  struct Check;
  void complete_if_settled(Check& check);
  void complete(Check& check);
  void background_round();
  void reap();

  lws_context* context_;
  DatagramSocket& socket_;
  Store& store_;
  LiveDevices& live_;
  std::uint16_t device_port_;
  std::chrono::seconds background_interval_;
  std::list<std::unique_ptr<Check>> checks_;
  std::list<std::unique_ptr<Check>> finished_;
  std::map<std::string, std::int64_t> last_seen_udp_;
  std::unique_ptr<LwsTimer> background_;
  std::unique_ptr<LwsTimer> reaper_;
};

}  // namespace tether::server
