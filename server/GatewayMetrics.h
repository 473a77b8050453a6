// tether-gateway's metrics (docs/metrics.md): the process basics, the listener's channel
// counts (devices and the server's link), the router's devices and link state, and the
// tunnels it splices.
#pragma once

#include <memory>
#include <string>

#include "common/MetricsRegistry.h"
#include "server/ChannelMetrics.h"

namespace tether::server {

class GatewayRouter;
class GatewayTunnels;
class HttpsServer;
class TunnelRelay;

class GatewayMetrics {
 public:
  GatewayMetrics();
  GatewayMetrics(const GatewayMetrics&) = delete;
  GatewayMetrics& operator=(const GatewayMetrics&) = delete;

  // The parts must outlive every render().
  void attach(HttpsServer& https, const GatewayRouter& router, const GatewayTunnels& tunnels,
              TunnelRelay& relay);
  // GatewayTunnels reported "ended" with `reason`.
  void tunnel_ended(const std::string& reason);

  [[nodiscard]] const MetricsRegistry& registry() const noexcept { return registry_; }

 private:
  MetricsRegistry registry_;
  std::unique_ptr<ChannelMetrics> channels_;
  MetricsRegistry::Family<Counter> tunnels_ended_;
};

}  // namespace tether::server
