// Everything LAN-facing the agent does besides the UP channel, behind one object so that
// AgentDaemon wires it in with a few lines: the discovery responder (UDP), the TCP listener
// (range scans, registration requests), scan-and-register and auto-registration, the
// persisted online-check key, and wake-on-LAN (enabling it on wired NICs, wake_peer).
#pragma once

#include <libwebsockets.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/AgentConfig.h"
#include "agent/DiscoveryRegistrar.h"
#include "agent/DiscoveryResponder.h"
#include "agent/DiscoveryTcpListener.h"
#include "common/Config.h"
#include "common/Result.h"
#include "protocol/UpMessage.h"

namespace tether::agent {

// online.key in the state directory: the key for authenticated online checks (HelloAck),
// 64 hex digits, 0600. The HMAC key is the 32 bytes those digits spell.
[[nodiscard]] std::string online_key_path(const StatePaths& paths);
[[nodiscard]] Result<std::optional<std::string>> load_online_key(const StatePaths& paths);
[[nodiscard]] Status save_online_key(const StatePaths& paths, const std::string& hex_key);
// discovery.json in the state directory: the responder's counters (for `status --json`).
[[nodiscard]] std::string discovery_stats_path(const StatePaths& paths);

class AgentDiscovery {
 public:
  // Starts what the configuration asks for; failures to bind are logged, not fatal (the UP
  // channel matters more). `on_enrolled` runs after a registration enrolled the device.
  AgentDiscovery(lws_context* ctx, lws_vhost* watch_vhost, const Config& config, StatePaths paths,
                 std::string device_id, std::function<void()> on_enrolled);
  ~AgentDiscovery();

  // The server's HelloAck: persists a new online key.
  void on_hello_ack(const protocol::HelloAck& ack);
  // The enrollment state may have changed (register, SIGHUP): re-read it; start or stop
  // auto-registration.
  void enrollment_changed();
  [[nodiscard]] Result<nlohmann::json> wake_peer(const protocol::WakePeer& request);
  // wol.unsupported events for NICs that could not be set up.
  [[nodiscard]] std::vector<protocol::Event> channel_events() const;
  // The responder's counters (metrics); null when it is not running.
  [[nodiscard]] const DiscoveryCounters* discovery_counters() const noexcept {
    return responder_ ? &responder_->counters() : nullptr;
  }

 private:
  [[nodiscard]] DiscoverySelf self();

  StatePaths paths_;
  std::string device_id_;
  std::string hostname_;
  std::string unit_id_;
  bool accept_registration_ = true;
  std::unique_ptr<DiscoveryRegistrar> registrar_;
  std::unique_ptr<DiscoveryResponder> responder_;
  std::unique_ptr<DiscoveryTcpListener> tcp_;
  std::vector<std::pair<std::string, std::string>> wol_unsupported_;
  // Cached enrollment facts for scan replies (re-read on enrollment_changed).
  bool enrolled_ = false;
  std::optional<protocol::Sha256> fingerprint_;
  std::vector<std::uint8_t> online_key_;
};

}  // namespace tether::agent
