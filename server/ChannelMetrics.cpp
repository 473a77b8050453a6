#include "server/ChannelMetrics.h"

namespace tether::server {
namespace {

constexpr std::string_view kKinds[] = {"up", "link"};

bool contains(const std::string& text, std::string_view word) {
  return text.find(word) != std::string::npos;
}

}  // namespace

std::string channel_refusal_reason(const Error& error) {
  // The sinks' messages (DeviceHub::admit, GatewayRouter::admit_*) are the only place the
  // reason is spelled; ChannelMetricsTest pins the ones it relies on.
  switch (error.code) {
    case Errc::kUnauthenticated: return "bad_certificate";
    case Errc::kPermissionDenied:
      if (contains(error.message, "unknown device")) return "unknown_device";
      if (contains(error.message, "deleted")) return "deleted";
      if (contains(error.message, "not known to the server")) return "not_allowed";
      if (contains(error.message, "link certificate")) return "not_link_certificate";
      if (contains(error.message, "revoked")) return "revoked";
      return "other";
    case Errc::kUnavailable:
      return contains(error.message, "connection limit") ? "connection_limit" : "unavailable";
    case Errc::kIo:
    case Errc::kInternal: return "store_error";
    default: return "other";
  }
}

ChannelMetrics::ChannelMetrics(MetricsRegistry& registry,
                               std::function<double(std::string_view)> open_channels) {
  handshakes_ = registry.counter_family(
      "tether_channel_handshakes_total",
      "WebSocket channel upgrades on the HTTPS listener by channel kind (up: devices, link: "
      "the server's link to a gateway), result and refusal reason.",
      {"channel", "result", "reason"});
  reconnects_ = registry.counter_family(
      "tether_channel_reconnects_total",
      "Accepted channels of a peer that had a channel of that kind accepted before by this "
      "process (still open or not).",
      {"channel"});
  for (std::string_view kind : kKinds) {
    handshakes_.with({std::string(kind), "accepted", ""});
    reconnects_.with({std::string(kind)});
  }
  registry.add_callback("tether_channels_open", "WebSocket channels open now, by channel kind.",
                        MetricType::kGauge, {"channel"}, [open = std::move(open_channels)] {
                          std::vector<MetricsRegistry::Sample> out;
                          for (std::string_view kind : kKinds) {
                            out.push_back({{std::string(kind)}, open ? open(kind) : 0});
                          }
                          return out;
                        });
}

void ChannelMetrics::accepted(std::string_view kind, const std::string& peer) {
  handshakes_.with({std::string(kind), "accepted", ""}).inc();
  auto& seen = seen_[kind == "link" ? 1 : 0];
  if (!seen.insert(std::hash<std::string>{}(peer)).second) {
    reconnects_.with({std::string(kind)}).inc();
  }
}

void ChannelMetrics::refused(std::string_view kind, std::string_view reason) {
  handshakes_.with({std::string(kind), "refused", std::string(reason)}).inc();
}

}  // namespace tether::server
