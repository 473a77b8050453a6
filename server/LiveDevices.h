// What the REST API needs from the UP hub: the live state of a device's channel, a way to
// cut it (revocation), and requests to the device whose results come back later.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/Result.h"
#include "protocol/UpMessage.h"

namespace tether::server {

struct LiveDeviceState {
  std::string address;
  std::int64_t last_seen = 0;
  std::string status_json;               // latest status report, "" if none yet
  std::string connected_via = "direct";  // or "gateway:NAME"
  std::string gateway;                   // the gateway's name; "" when direct
  // The server instance holding the channel (ClusterBus ids); "" for a single instance.
  std::string instance;
};

// Called exactly once with the device's result (ok or the device's own error), or with an
// error of the server's: kUnavailable (the device is offline, or its channel closed before
// it answered), kTimeout (no answer within the hub's request timeout).
using RequestDone = std::function<void(Result<protocol::ResultBody>)>;

class LiveDevices {
 public:
  virtual ~LiveDevices() = default;
  // The state of the device's open channel; nullopt when it is offline.
  [[nodiscard]] virtual std::optional<LiveDeviceState> live_state(const std::string& id) const = 0;
  // The states of many devices at once (a listing), by id; offline devices are absent.
  [[nodiscard]] virtual std::unordered_map<std::string, LiveDeviceState> live_states(
      const std::vector<std::string>& ids) const {
    std::unordered_map<std::string, LiveDeviceState> out;
    for (const auto& id : ids) {
      if (auto state = live_state(id)) out.emplace(id, std::move(*state));
    }
    return out;
  }
  // Closes the device's channel (if open) with a WebSocket close code.
  virtual void disconnect(const std::string& id, int close_code, const std::string& reason) = 0;
  // Sends a request (command, settings, ...) on the device's channel. When the device is
  // offline, `done` runs before this returns; otherwise later, from the event loop.
  virtual void request(const std::string& id, protocol::UpBody body, RequestDone done) = 0;
};

// WebSocket close codes the server uses on UP channels (protocol/UpMessage.h).
inline constexpr int kCloseRestarting = protocol::kCloseServiceRestart;
using protocol::kCloseReplaced;
using protocol::kCloseRevoked;

}  // namespace tether::server
