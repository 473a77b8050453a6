// What the REST API needs from the UP hub: the live state of a device's channel, and a way
// to cut it (revocation).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "protocol/UpMessage.h"

namespace tether::server {

struct LiveDeviceState {
  std::string address;
  std::int64_t last_seen = 0;
  std::string status_json;  // latest status report, "" if none yet
  std::string connected_via = "direct";
};

class LiveDevices {
 public:
  virtual ~LiveDevices() = default;
  // The state of the device's open channel; nullopt when it is offline.
  [[nodiscard]] virtual std::optional<LiveDeviceState> live_state(const std::string& id) const = 0;
  // Closes the device's channel (if open) with a WebSocket close code.
  virtual void disconnect(const std::string& id, int close_code, const std::string& reason) = 0;
};

// WebSocket close codes the server uses on UP channels (protocol/UpMessage.h).
inline constexpr int kCloseRestarting = protocol::kCloseServiceRestart;
using protocol::kCloseReplaced;
using protocol::kCloseRevoked;

}  // namespace tether::server
