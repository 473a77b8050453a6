// tether-server as one object: opens the state (CA, admin token, database), wires the REST
// API and the UP hub to the HTTPS listener, and runs the event loop until SIGTERM/SIGINT.
#pragma once

#include <chrono>
#include <memory>

#include "common/LwsLoop.h"
#include "common/Result.h"
#include "server/AdminToken.h"
#include "server/CertificateAuthority.h"
#include "server/ClusterDevices.h"
#include "server/DaemonLoop.h"
#include "server/DeviceHub.h"
#include "server/EnrollmentService.h"
#include "server/GatewayApi.h"
#include "server/GatewayConnector.h"
#include "server/HttpsServer.h"
#include "server/LanDiscovery.h"
#include "server/MetricsEndpoint.h"
#include "server/PgClusterBus.h"
#include "server/RestApi.h"
#include "server/ServerConfig.h"
#include "server/ServerMetrics.h"
#include "server/ShadowService.h"
#include "server/Store.h"
#include "server/TunnelRelay.h"
#include "server/UserApi.h"
#include "server/WebApp.h"

namespace tether::server {

class Server {
 public:
  // Opens or creates everything in the state directory; logs what it created.
  [[nodiscard]] static Result<std::unique_ptr<Server>> create(const ServerSettings& settings);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listener, then serves until a stop is requested. Returns the exit code.
  [[nodiscard]] int run();

  // Async-signal-safe: asks the running server to stop.
  static void request_stop() noexcept;

 private:
  explicit Server(ServerSettings settings);
  void on_tick();
  void begin_shutdown();
  [[nodiscard]] bool drained() const;
  void flush_activity();
  void end_orphaned_audit(const std::vector<std::string>& running, std::int64_t requested_before);

  ServerSettings settings_;
  // First: the parts below hold handles into its registry.
  ServerMetrics metrics_;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;
  // The hub's transport: the listener's channels and those of devices behind gateways.
  ChannelRouter channels_;
  std::unique_ptr<CertificateAuthority> ca_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<EnrollmentService> enrollment_;
  std::unique_ptr<HttpsServer> https_;
  // Scale-out on PostgreSQL (nullptr on SQLite): declared before the hub, so that the hub's
  // requests still waiting when it goes can answer other instances through them.
  std::unique_ptr<PgClusterBus> bus_;
  std::unique_ptr<ClusterDevices> cluster_;
  std::unique_ptr<DeviceHub> hub_;
  std::unique_ptr<RestApi> rest_;
  std::unique_ptr<GatewayApi> gateways_;
  std::unique_ptr<GatewayConnector> connector_;
  std::unique_ptr<LanDiscovery> lan_;
  std::unique_ptr<ShadowService> shadow_;
  std::unique_ptr<TunnelRelay> relay_;
  std::unique_ptr<UserApi> users_;
  std::unique_ptr<WebApp> web_;
  std::unique_ptr<DaemonLoop> loop_;
  std::chrono::steady_clock::time_point next_flush_{};
  std::chrono::steady_clock::time_point next_audit_sweep_{};
};

}  // namespace tether::server
