#include "agent/InventoryMonitor.h"

#include "common/Log.h"

namespace tether::agent {

InventoryMonitor::InventoryMonitor(lws_vhost* vhost, std::function<void()> on_network_change,
                                   std::function<void()> on_inventory_change)
    : on_network_change_(std::move(on_network_change)),
      on_inventory_change_(std::move(on_inventory_change)) {
  // Watch before the first collection, so nothing changes unnoticed in between.
  auto watcher = platform::DeviceWatcher::open();
  if (!watcher.ok()) {
    log::warning("no device or network change notifications: " + watcher.error().message);
    return;
  }
  watcher_.emplace(std::move(watcher).value());
  for (const auto& w : watcher_->warnings()) log::notice(w);
  for (int fd : watcher_->fds()) {
    auto watch = LwsFdWatcher::watch(vhost, fd, [this, fd] { on_readable(fd); });
    if (!watch.ok()) {
      log::warning("cannot watch for device changes: " + watch.error().message);
      continue;
    }
    watches_.push_back(std::move(watch).value());
  }
}

void InventoryMonitor::on_readable(int fd) {
  const platform::DeviceChanges changes = watcher_->process(fd);
  if (changes.network && on_network_change_) on_network_change_();
  if (changes.inventory && on_inventory_change_) on_inventory_change_();
}

protocol::Inventory InventoryMonitor::collect() {
  platform::InventoryReport report = collector_.collect();
  for (const auto& w : report.warnings) {
    if (warned_.insert(w).second) log::notice("inventory: " + w);
  }
  return std::move(report.inventory);
}

}  // namespace tether::agent
