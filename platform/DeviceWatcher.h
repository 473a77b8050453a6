// Tells the agent when its inventory or its network changed, from two kernel sources:
//  - a libudev monitor on the *kernel* uevent source (not udevd's: a container or a minimal
//    image may have no udevd), filtered to the net, block, usb and drm subsystems;
//  - an rtnetlink socket subscribed to link, IPv4/IPv6 address and IPv4/IPv6 route changes.
// The agent adopts fds() into its event loop and calls process(fd) when one is readable.
//
// Open the watcher before collecting the inventory, so that nothing that changes between the
// two goes unnoticed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/Result.h"
#include "common/UniqueFd.h"
#include "platform/Udev.h"

namespace tether::platform {

namespace detail {
struct NetState;  // links, addresses and default routes last seen, to tell news from repeats
}  // namespace detail

struct DeviceChanges {
  bool inventory = false;  // any device event, or a link or address change: collect again
  // A link went up or down (or appeared, or went away), an address was added or removed, or
  // a default route (destination prefix length 0) was added, removed or changed: the
  // network path to the server may be different now.
  bool network = false;

  DeviceChanges& operator|=(const DeviceChanges& other) {
    inventory = inventory || other.inventory;
    network = network || other.network;
    return *this;
  }
  friend bool operator==(const DeviceChanges&, const DeviceChanges&) = default;
};

struct DeviceWatcherOptions {
  bool udev = true;  // tests turn a source off to check that the other works alone
  bool rtnetlink = true;
};

class DeviceWatcher {
 public:
  // Opens the sources asked for. One that cannot be opened becomes a warning and the other
  // carries on; the error (kUnavailable) is only for neither opening.
  [[nodiscard]] static Result<DeviceWatcher> open(const DeviceWatcherOptions& options);
  [[nodiscard]] static Result<DeviceWatcher> open() { return open(DeviceWatcherOptions{}); }

  DeviceWatcher(DeviceWatcher&&) noexcept;
  DeviceWatcher& operator=(DeviceWatcher&&) noexcept;
  DeviceWatcher(const DeviceWatcher&) = delete;
  DeviceWatcher& operator=(const DeviceWatcher&) = delete;
  ~DeviceWatcher();

  // -1 when that source is not open.
  [[nodiscard]] int udev_fd() const noexcept;
  [[nodiscard]] int rtnetlink_fd() const noexcept { return rtnl_.get(); }
  // The open sources' fds, to watch for readability. They stay owned by the watcher.
  [[nodiscard]] std::vector<int> fds() const;

  // Sources that could not be opened, and a failed first read of the network state, in words.
  [[nodiscard]] const std::vector<std::string>& warnings() const noexcept { return warnings_; }

  // Reads what is waiting on `fd` without blocking, at most kMaxMessagesPerCall datagrams
  // (a flood is left for the next call: the fd stays readable), and says what changed. Lost
  // events (a socket buffer overrun) count as a change of everything; after an rtnetlink
  // overrun the network state is re-read with dumps, which the kernel answers at once. An
  // fd that is not one of ours gives no changes.
  [[nodiscard]] DeviceChanges process(int fd);

  static constexpr int kMaxMessagesPerCall = 64;

 private:
  DeviceWatcher();
  [[nodiscard]] Status open_udev();
  [[nodiscard]] Status open_rtnetlink();
  [[nodiscard]] Status resync();
  [[nodiscard]] DeviceChanges process_udev();
  [[nodiscard]] DeviceChanges process_rtnetlink();

  UdevPtr udev_;
  UdevMonitorPtr monitor_;
  UniqueFd rtnl_;
  std::unique_ptr<detail::NetState> state_;
  std::vector<char> buffer_;  // one datagram
  std::vector<std::string> warnings_;
};

}  // namespace tether::platform
