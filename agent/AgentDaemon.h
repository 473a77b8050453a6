// `tether-agent run`: the service. One libwebsockets loop carries the UP channel (UpClient +
// AgentSession), timers and signals. Until the device is enrolled it waits (SIGHUP from
// `register`, or a periodic look at the state directory) and then connects by itself.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/AgentConfig.h"
#include "agent/AgentDiscovery.h"
#include "agent/AgentMetrics.h"
#include "agent/AgentSession.h"
#include "agent/AgentSettings.h"
#include "agent/DeviceIdentity.h"
#include "agent/InventoryMonitor.h"
#include "agent/LogindBridge.h"
#include "agent/ShadowSupervisor.h"
#include "agent/StatusFile.h"
#include "agent/UpClient.h"
#include "agent/UpTlsContext.h"
#include "common/Config.h"
#include "common/LwsLoop.h"
#include "platform/SystemdNotifier.h"

namespace tether::agent {

class AgentDaemon final : public SessionHost {
 public:
  AgentDaemon(ConfigLocation location, Config config, StatePaths paths);
  ~AgentDaemon() override;

  // Runs until SIGTERM/SIGINT; returns the process exit code.
  [[nodiscard]] int run();

  // SessionHost
  [[nodiscard]] const std::string& device_id() const override { return identity_->device_id(); }
  [[nodiscard]] EVP_PKEY* device_key() const override { return identity_->key(); }
  [[nodiscard]] X509* device_certificate() const override { return identity_->certificate(); }
  [[nodiscard]] Status install_certificate(ssl::X509Ptr cert) override;
  [[nodiscard]] const std::vector<std::string>& trusted_cas() const override { return trust_; }
  [[nodiscard]] Status set_trusted_cas(std::vector<std::string> fingerprints) override;
  [[nodiscard]] std::string channel_ca() const override;
  void on_hello_ack(const protocol::HelloAck& ack) override;
  void run_command(const protocol::Command& command, CommandDone done) override;
  [[nodiscard]] Result<nlohmann::json> apply_settings(const protocol::Settings& settings) override;
  [[nodiscard]] std::optional<protocol::Inventory> inventory() override;
  [[nodiscard]] Result<nlohmann::json> wake_peer(const protocol::WakePeer& request) override {
    if (!discovery_) return make_error(Errc::kUnavailable, "not ready");
    return discovery_->wake_peer(request);
  }
  [[nodiscard]] std::vector<protocol::Event> channel_events() override {
    return discovery_ ? discovery_->channel_events() : std::vector<protocol::Event>{};
  }
  void start_shadow(const protocol::ShadowStart& start, ShadowAnswer answer) override;
  void stop_shadow(const protocol::ShadowStop& stop) override {
    if (shadow_) shadow_->stop(stop);
  }
  [[nodiscard]] int shadow_sessions() const override {
    return shadow_ ? shadow_->running_sessions() : 0;
  }
  void on_session_changed() override {
    if (client_) publish(client_->status());
  }

  static int control_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                              std::size_t len);

 private:
  [[nodiscard]] Status create_loop();
  // (Re)reads identity, enrollment and trust; starts or restarts the channel as needed
  // (always restarts it with `restart_channel`).
  void load_enrollment_and_connect(bool restart_channel = false);
  // Re-reads the configuration files (SIGHUP); keeps the old configuration on errors.
  void reload_config();
  // Puts a new configuration in force; restarts the channel only if its settings changed.
  void apply_config(Config next);
  void handle_signals();
  void publish(const ChannelStatus& status);
  void finish();

  ConfigLocation location_;
  Config config_;
  StatePaths paths_;
  LwsContextPtr context_;
  lws_vhost* client_vhost_ = nullptr;
  std::optional<DeviceIdentity> identity_;
  std::optional<EnrollmentRecord> enrollment_;
  std::vector<std::string> trust_;
  std::unique_ptr<UpTlsContext> tls_;
  std::unique_ptr<UpClient> client_;
  std::unique_ptr<AgentSession> session_;
  std::unique_ptr<LwsTimer> enrollment_poll_;
  std::unique_ptr<LwsTimer> stop_deadline_;
  std::unique_ptr<LwsTimer> watchdog_;
  std::unique_ptr<LogindBridge> logind_;
  std::unique_ptr<InventoryMonitor> inventory_;
  std::unique_ptr<ShadowSupervisor> shadow_;
  std::unique_ptr<AgentDiscovery> discovery_;
  std::unique_ptr<AgentMetrics> metrics_;  // metrics.file (off by default)
  platform::SystemdNotifier notifier_;
  std::string device_name_;
  std::string endpoint_;
  bool stopping_ = false;
  bool done_ = false;
};

}  // namespace tether::agent
