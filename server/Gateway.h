// tether-gateway as one object (the ICG role, docs/architecture.md "Gateway"): its identity
// from the state directory (made once by --join), the TLS listener carrying device channels,
// the server's link and shadowing tunnels, the router between them, and the event loop until
// SIGTERM/SIGINT.
#pragma once

#include <chrono>
#include <memory>

#include "common/LwsLoop.h"
#include "common/Result.h"
#include "server/DaemonLoop.h"
#include "server/GatewayConfig.h"
#include "server/GatewayIdentity.h"
#include "server/GatewayMetrics.h"
#include "server/GatewayRouter.h"
#include "server/GatewayTunnels.h"
#include "server/HttpsServer.h"
#include "server/MetricsEndpoint.h"
#include "server/TunnelRelay.h"

namespace tether::server {

class Gateway {
 public:
  // Joins first when settings.join_token is set and the state directory has no identity.
  [[nodiscard]] static Result<std::unique_ptr<Gateway>> create(const GatewaySettings& settings);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Binds the listener, then serves until a stop is requested. Returns the exit code.
  [[nodiscard]] int run();
  static void request_stop() noexcept;

 private:
  explicit Gateway(GatewaySettings settings) : settings_(std::move(settings)) {}
  void on_tick();
  void begin_shutdown();
  [[nodiscard]] bool drained() const;

  GatewaySettings settings_;
  // First: the parts below hold handles into its registry.
  GatewayMetrics metrics_;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;
  GatewayIdentity identity_;
  std::unique_ptr<HttpsServer> https_;
  std::unique_ptr<GatewayRouter> router_;
  std::unique_ptr<GatewayTunnels> tunnels_;
  std::unique_ptr<TunnelRelay> relay_;
  std::unique_ptr<DaemonLoop> loop_;
};

}  // namespace tether::server
