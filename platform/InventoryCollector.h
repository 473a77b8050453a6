// The device inventory the agent reports over UP (protocol::Inventory): network interfaces,
// CPU, memory, disks, USB devices and display connectors, read from sysfs and /proc, with
// libudev enumerating devices where it can.
//
// Enumeration works without udevd (containers, minimal images): libudev itself only scans
// sysfs, and where it is unavailable or finds nothing, sysfs is listed directly. What could not
// be read becomes a warning in words, and collection carries on. Sources field by field:
// docs/architecture.md, "Inventory".
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "platform/NicQueries.h"
#include "platform/Udev.h"
#include "protocol/UpMessage.h"

namespace tether::platform {

struct InventoryReport {
  // Always valid for the protocol: it encodes, and the decoder accepts it (strings cleaned,
  // lists capped, the whole message within the UP limits).
  protocol::Inventory inventory;
  // What could not be read or was left out, in words. The texts do not change from one
  // collection to the next unless the cause does, so a caller can log each one once.
  std::vector<std::string> warnings;
};

class InventoryCollector {
 public:
  // `sys_root` and `proc_root` let tests point the collector at a fake tree; libudev is used
  // only with the real "/sys". `nic_queries` answers what sysfs cannot (addresses,
  // wake-on-LAN, the driver of virtual NICs); null means the running kernel's
  // (KernelNicQueries).
  explicit InventoryCollector(std::string sys_root = "/sys", std::string proc_root = "/proc",
                              std::unique_ptr<NicQueries> nic_queries = nullptr);

  [[nodiscard]] InventoryReport collect();

  // True when devices are enumerated through libudev (else by listing sysfs directories).
  [[nodiscard]] bool uses_udev() const noexcept { return udev_ != nullptr; }

  // At most this many warnings are returned; one more line says how many were left out.
  static constexpr std::size_t kMaxWarnings = 64;

 private:
  struct Device;  // one enumerated device: its sysfs path, name and a few udev properties

  // In natural order ("1-2" before "1-10"), whichever way they were found.
  [[nodiscard]] static std::vector<Device> sorted(std::vector<Device> devices);
  [[nodiscard]] std::vector<Device> enumerate(const char* subsystem,
                                              const std::vector<std::string>& sysfs_dirs,
                                              bool warn_if_missing,
                                              std::vector<std::string>& warnings) const;
  void collect_nics(protocol::Inventory& inv, std::vector<std::string>& warnings);
  void collect_cpu_and_memory(protocol::Inventory& inv, std::vector<std::string>& warnings) const;
  void collect_block_devices(protocol::Inventory& inv, std::vector<std::string>& warnings) const;
  void collect_usb_devices(protocol::Inventory& inv, std::vector<std::string>& warnings) const;
  void collect_displays(protocol::Inventory& inv, std::vector<std::string>& warnings) const;

  std::string sys_root_;
  std::string proc_root_;
  std::unique_ptr<NicQueries> nic_queries_;
  UdevPtr udev_;  // null: list sysfs directly
};

}  // namespace tether::platform
