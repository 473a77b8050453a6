#include "server/GatewayMetrics.h"

#include <string_view>

#include "common/ProcessMetrics.h"
#include "common/Version.h"
#include "server/GatewayRouter.h"
#include "server/GatewayTunnels.h"
#include "server/HttpsServer.h"
#include "server/TunnelRelay.h"

namespace tether::server {
namespace {

// GatewayTunnels' end reasons (docs/protocol.md §5, "Tunnels over a gateway").
constexpr std::string_view kTunnelEndReasons[] = {"viewer_closed", "device_closed", "timeout",
                                                  "closed_by_server", "gateway_stopping"};

}  // namespace

GatewayMetrics::GatewayMetrics() {
  add_process_metrics(registry_, kVersion);
}

void GatewayMetrics::attach(HttpsServer& https, const GatewayRouter& router,
                            const GatewayTunnels& tunnels, TunnelRelay& relay) {
  HttpsServer* listener = &https;
  channels_ = std::make_unique<ChannelMetrics>(registry_, [listener](std::string_view kind) {
    return static_cast<double>(
        listener->channel_count(kind == "link" ? ChannelKind::kLink : ChannelKind::kUp));
  });
  https.set_channel_metrics(channels_.get());

  const GatewayRouter* r = &router;
  registry_.add_callback_gauge("tether_gateway_devices_connected",
                               "Devices with an UP channel open to this gateway.",
                               [r] { return static_cast<double>(r->device_count()); });
  registry_.add_callback_gauge("tether_gateway_server_link_up",
                               "1 while the server's link to this gateway is open, else 0.",
                               [r] { return r->link_up() ? 1.0 : 0.0; });
  registry_.add_callback_gauge(
      "tether_gateway_devices_allowed",
      "Devices on the server's latest list of devices this gateway may admit.",
      [r] { return static_cast<double>(r->allowed_count()); });
  registry_.add_callback("tether_gateway_dropped_messages_total",
                         "Device messages dropped because the server's link was down.",
                         MetricType::kCounter, {}, [r] {
                           return std::vector<MetricsRegistry::Sample>{
                               {{}, static_cast<double>(r->counters().dropped_messages)}};
                         });

  const GatewayTunnels* t = &tunnels;
  registry_.add_callback_gauge("tether_gateway_tunnels_active",
                               "Shadowing tunnels this gateway holds now (opened, not yet gone).",
                               [t] { return static_cast<double>(t->session_count()); });
  tunnels_ended_ = registry_.counter_family("tether_gateway_tunnels_total",
                                            "Shadowing tunnels ended, by end reason.", {"reason"});
  for (std::string_view reason : kTunnelEndReasons) tunnels_ended_.with({std::string(reason)});
  relay.set_metrics(registry_);
}

void GatewayMetrics::tunnel_ended(const std::string& reason) {
  for (std::string_view known : kTunnelEndReasons) {
    if (reason == known) {
      tunnels_ended_.with({reason}).inc();
      return;
    }
  }
  tunnels_ended_.with({"other"}).inc();
}

}  // namespace tether::server
