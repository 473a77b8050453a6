#include "server/ServerMetrics.h"

#include <algorithm>
#include <array>
#include <string_view>

#include "common/ProcessMetrics.h"
#include "common/Version.h"
#include "server/DeviceHub.h"
#include "server/EnrollmentService.h"
#include "server/GatewayConnector.h"
#include "server/HttpsServer.h"
#include "server/LanDiscovery.h"
#include "server/ShadowService.h"
#include "server/TunnelRelay.h"

namespace tether::server {
namespace {

using Samples = std::vector<MetricsRegistry::Sample>;

constexpr std::array<std::string_view, 20> kShadowEndReasons = {"admin",
                                                                "user",
                                                                "policy",
                                                                "vnc_exited",
                                                                "tunnel_lost",
                                                                "agent_stopping",
                                                                "viewer_closed",
                                                                "device_closed",
                                                                "peer_timeout",
                                                                "server_stopping",
                                                                "gateway_unreachable",
                                                                "gateway_ended",
                                                                "viewer_protocol_error",
                                                                "device_protocol_error",
                                                                "closed_by_server",
                                                                "gateway_stopping",
                                                                "timeout",
                                                                "offline",
                                                                "busy",
                                                                "permission_denied"};

}  // namespace

std::string shadow_end_reason_label(const std::string& reason) {
  return std::find(kShadowEndReasons.begin(), kShadowEndReasons.end(), reason) !=
                 kShadowEndReasons.end()
             ? reason
             : "other";
}

ServerMetrics::ServerMetrics() {
  add_process_metrics(registry_, kVersion);
}

void ServerMetrics::attach(HttpsServer& https, DeviceHub& hub, EnrollmentService& enrollment,
                           ShadowService& shadow, TunnelRelay& relay, const LanDiscovery& lan,
                           const GatewayConnector& gateways) {
  HttpsServer* listener = &https;
  channels_ = std::make_unique<ChannelMetrics>(registry_, [listener](std::string_view kind) {
    return static_cast<double>(
        listener->channel_count(kind == "link" ? ChannelKind::kLink : ChannelKind::kUp));
  });
  https.set_channel_metrics(channels_.get());

  const DeviceHub* devices = &hub;
  registry_.add_callback_gauge(
      "tether_devices_connected",
      "Devices with an UP channel on this server (direct or through a gateway), greeted or not.",
      [devices] { return static_cast<double>(devices->connection_count()); });
  registry_.add_callback_gauge("tether_devices_online",
                               "Devices on this server whose hello was answered (online).",
                               [devices] { return static_cast<double>(devices->online_count()); });

  const GatewayConnector* links = &gateways;
  registry_.add_callback_gauge(
      "tether_gateway_links_connected",
      "Gateways whose link from this server is open (their devices count in "
      "tether_devices_connected).",
      [links] { return static_cast<double>(links->connected_links()); });

  enrollment.set_metrics(registry_);
  relay.set_metrics(registry_);

  const ShadowService* sessions = &shadow;
  registry_.add_callback_gauge(
      "tether_shadow_sessions_active",
      "Shadowing sessions this server holds now (requested, joining, spliced or ending).",
      [sessions] { return static_cast<double>(sessions->session_count()); });
  shadow_sessions_ = registry_.counter_family(
      "tether_shadow_sessions_total",
      "Shadowing sessions ended, by whether both ends were spliced and by end reason.",
      {"spliced", "reason"});
  shadow.on_finished = [family = shadow_sessions_](const ShadowAuditRecord& record) {
    family.with({record.started_at ? "true" : "false", shadow_end_reason_label(record.end_reason)})
        .inc();
  };

  const LanDiscovery* lan_parts = &lan;
  registry_.add_callback(
      "tether_lan_replies_received_total",
      "Datagrams received on the server's LAN socket (replies to its scan and online probes), "
      "by outcome: matched (handed to the scan or check that sent the probe), unmatched (no "
      "probe of ours has that nonce), undecodable.",
      MetricType::kCounter, {"outcome"}, [lan_parts] {
        const DatagramSocket* socket = lan_parts->datagram_socket();
        auto value = [socket](std::uint64_t (DatagramSocket::*count)() const noexcept) {
          return socket != nullptr ? static_cast<double>((socket->*count)()) : 0.0;
        };
        return Samples{{{"matched"}, value(&DatagramSocket::matched_count)},
                       {{"unmatched"}, value(&DatagramSocket::unmatched_count)},
                       {{"undecodable"}, value(&DatagramSocket::undecodable_count)}};
      });
  registry_.add_callback(
      "tether_registration_requests_total",
      "Registration token requests on TCP port 30001, by answer: issued, disabled "
      "(auto-registration off and no scan asked), refused, wrong_server, malformed.",
      MetricType::kCounter, {"answer"}, [lan_parts] {
        const RegistrationListener* registration = lan_parts->registration_listener();
        const RegistrationCounters c =
            registration != nullptr ? registration->counters() : RegistrationCounters{};
        auto d = [](std::uint64_t v) { return static_cast<double>(v); };
        return Samples{{{"issued"}, d(c.issued)},
                       {{"disabled"}, d(c.disabled)},
                       {{"refused"}, d(c.refused)},
                       {{"wrong_server"}, d(c.wrong_server)},
                       {{"malformed"}, d(c.malformed)}};
      });
}

}  // namespace tether::server
