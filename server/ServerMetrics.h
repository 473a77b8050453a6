// tether-server's metrics (docs/metrics.md): one registry, the process basics, and what the
// listener, hub, enrollment, shadowing, relay and LAN parts count, wired in by attach().
#pragma once

#include <memory>
#include <string>

#include "common/MetricsRegistry.h"
#include "server/ChannelMetrics.h"

namespace tether::server {

class DeviceHub;
class EnrollmentService;
class GatewayConnector;
class HttpsServer;
class LanDiscovery;
class ShadowService;
class TunnelRelay;
struct ShadowAuditRecord;

// The reason label of an ended shadowing session: the reasons Tether itself uses
// (docs/protocol.md §5), "other" for anything else a device said (labels stay bounded).
[[nodiscard]] std::string shadow_end_reason_label(const std::string& reason);

class ServerMetrics {
 public:
  ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // Registers the parts' metrics and hooks their counters in. The parts must outlive every
  // render() (the server renders only while it runs).
  void attach(HttpsServer& https, DeviceHub& hub, EnrollmentService& enrollment,
              ShadowService& shadow, TunnelRelay& relay, const LanDiscovery& lan,
              const GatewayConnector& gateways);

  [[nodiscard]] MetricsRegistry& registry() noexcept { return registry_; }
  [[nodiscard]] const MetricsRegistry& registry() const noexcept { return registry_; }

 private:
  MetricsRegistry registry_;
  std::unique_ptr<ChannelMetrics> channels_;
  MetricsRegistry::Family<Counter> shadow_sessions_;
};

}  // namespace tether::server
