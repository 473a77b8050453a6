// NicQueries answered by the running kernel: getifaddrs and the ethtool ioctl, in the network
// namespace the process is in when the first query is made.
#pragma once

#include <optional>

#include "platform/NicQueries.h"

namespace tether::platform {

class KernelNicQueries final : public NicQueries {
 public:
  [[nodiscard]] Result<std::map<std::string, std::vector<std::string>>> addresses() override;
  [[nodiscard]] Result<WakeOnLanModes> wake_on_lan(const std::string& ifname) override;
  [[nodiscard]] std::string driver_name(const std::string& ifname) override;

 private:
  // Opened on first use and kept: one socket serves every ioctl of every collection.
  Result<const EthtoolClient*> ethtool();
  std::optional<EthtoolClient> ethtool_;
};

}  // namespace tether::platform
