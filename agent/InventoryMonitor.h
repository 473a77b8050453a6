// Keeps the device's inventory current: collects it (platform::InventoryCollector), watches
// the kernel for device and network changes (platform::DeviceWatcher, its fds adopted into
// the lws loop), and tells the agent what changed: a network change resets the reconnect
// backoff, an inventory change is sent to the server (the session debounces).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/LwsFdWatcher.h"
#include "platform/DeviceWatcher.h"
#include "platform/InventoryCollector.h"

namespace tether::agent {

class InventoryMonitor {
 public:
  InventoryMonitor(lws_vhost* vhost, std::function<void()> on_network_change,
                   std::function<void()> on_inventory_change);

  // Collects now (logging each new warning once).
  [[nodiscard]] protocol::Inventory collect();

 private:
  void on_readable(int fd);

  std::function<void()> on_network_change_;
  std::function<void()> on_inventory_change_;
  std::optional<platform::DeviceWatcher> watcher_;
  std::vector<std::unique_ptr<LwsFdWatcher>> watches_;
  platform::InventoryCollector collector_;
  std::set<std::string> warned_;
};

}  // namespace tether::agent
