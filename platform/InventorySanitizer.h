// Makes inventory data from local sources (sysfs, /proc, drivers, USB descriptors: anything a
// device or a driver may fill with junk) fit the protocol's rules, so that the inventory
// message always encodes and always passes the server's decoder (docs/protocol.md,
// "inventory").
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/UpMessage.h"

namespace tether::platform {

// Trims surrounding white space, replaces control characters (C0, DEL; white-space controls
// become a space, the rest '?') and bytes that are not valid UTF-8 ('?'), and cuts the result
// to at most `max_bytes` without splitting a character.
[[nodiscard]] std::string clean_text(std::string_view raw, std::size_t max_bytes);

// Cleans every string of `inventory` to its field's limit, clamps the numbers to their
// ranges, drops values the decoder would refuse (an invalid MAC becomes empty; a USB device
// without valid ids is left out), caps every list at the protocol's maximum, and finally
// leaves out items from the ends of the lists until the whole message fits the UP limits
// (bytes and values). Every item left out adds a warning to `warnings`; strings are cut
// silently (a cut string shows it).
void sanitize_inventory(protocol::Inventory& inventory, std::vector<std::string>& warnings);

// Protocol maxima for inventory fields (docs/protocol.md, "inventory").
struct InventoryLimits {
  static constexpr std::size_t kCpuModel = 128;
  static constexpr std::int64_t kCpuCount = 65536;
  static constexpr std::int64_t kBytes = std::int64_t{1} << 56;
  static constexpr std::size_t kNics = 256;
  static constexpr std::size_t kNicName = 32;
  static constexpr std::size_t kDriver = 64;
  static constexpr std::int64_t kSpeedMbps = 10'000'000;
  static constexpr std::size_t kAddresses = 64;
  static constexpr std::size_t kAddress = 64;
  static constexpr std::size_t kWolLetters = 16;
  static constexpr std::size_t kBlockDevices = 256;
  static constexpr std::size_t kBlockName = 64;
  static constexpr std::size_t kModel = 128;
  static constexpr std::size_t kUsbDevices = 256;
  static constexpr std::size_t kUsbId = 4;
  static constexpr std::size_t kUsbString = 128;
  static constexpr std::size_t kDisplays = 64;
  static constexpr std::size_t kConnector = 64;
  static constexpr std::size_t kModes = 128;
  static constexpr std::size_t kMode = 32;
};

}  // namespace tether::platform
