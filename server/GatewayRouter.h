// The heart of tether-gateway (docs/protocol.md §6): device UP channels on one side, the
// server's link on the other. It keeps no registry: which devices may connect comes from
// the server over the link ("allow" lists, "revoke"), held in memory only. Device messages
// go to the server unchanged, wrapped with their channel's id; the server's go back the same
// way. While there is no link, devices already admitted stay connected and are told
// (gateway_status "unavailable"); what they send meanwhile is dropped, and when the link
// returns every channel is announced again and told "connected", so the agents say hello
// again. Until the server's first list has arrived (the gateway just started), devices with a
// certificate of the CA are let in on probation and closed when the list does not name them.
// Enrollment requests that reach the gateway over HTTPS are passed to the server.
// No I/O of its own: channels are sent to through an UpTransport (HttpsServer), so that the
// unit tests drive it directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "common/Result.h"
#include "protocol/GatewayLinkMessage.h"
#include "server/ChannelSink.h"
#include "server/HttpMessage.h"

namespace tether::server {

struct GatewayRouterSettings {
  std::string name;                       // the gateway's name (from its certificate's join)
  std::string version;                    // for the link's hello
  std::size_t max_connections = 10000;    // device channels at once
  std::chrono::seconds http_timeout{30};  // a forwarded enrollment's answer
};

struct GatewayCounters {
  std::uint64_t refused_limit = 0;     // device channels refused by the connection limit
  std::uint64_t refused_unknown = 0;   // not on the server's list (or revoked)
  std::uint64_t dropped_messages = 0;  // device messages while the server was away
};

class GatewayRouter {
 public:
  using SteadyClock = std::chrono::steady_clock;
  // What the router asks of the gateway's tunnel table (GatewayTunnels).
  struct TunnelHooks {
    std::function<Status(const protocol::LinkTunnelOpen&)> open;
    std::function<void(const std::string& session, const std::string& reason)> close;
  };

  GatewayRouter(UpTransport& transport, GatewayRouterSettings settings);
  GatewayRouter(const GatewayRouter&) = delete;
  GatewayRouter& operator=(const GatewayRouter&) = delete;

  [[nodiscard]] ChannelSink& device_sink() noexcept { return devices_; }
  [[nodiscard]] ChannelSink& link_sink() noexcept { return link_side_; }
  void set_tunnel_hooks(TunnelHooks hooks) { tunnels_ = std::move(hooks); }

  // HTTPS requests to the gateway: POST /api/v1/enroll goes to the server; GET /healthz
  // answers at once; everything else is 404.
  void handle_http(const HttpRequest& request, HttpRespond respond);
  // A tunnel session's event, for the server's audit log.
  void tunnel_event(const std::string& session, const std::string& event,
                    const std::string& reason);
  // Answers forwarded requests that waited too long (504).
  void expire(SteadyClock::time_point now);
  // The gateway is stopping: every channel is closed as a restart (1012).
  void close_all();

  [[nodiscard]] std::size_t device_count() const noexcept { return channels_.size(); }
  [[nodiscard]] bool link_up() const noexcept { return link_.has_value(); }
  [[nodiscard]] bool device_list_loaded() const noexcept { return list_loaded_; }
  [[nodiscard]] std::size_t allowed_count() const noexcept { return allowed_.size(); }
  [[nodiscard]] const GatewayCounters& counters() const noexcept { return counters_; }

 private:
  struct DeviceChannel {
    std::string device;
    std::string address;
  };
  struct PendingHttp {
    HttpRespond respond;
    SteadyClock::time_point deadline;
  };

  class DeviceSide final : public ChannelSink {
   public:
    explicit DeviceSide(GatewayRouter& r) : r_(r) {}
    Result<std::string> identify(SSL* ssl) override { return peer_device_id(ssl); }
    Status admit(const std::string& peer, const std::string& address) override {
      return r_.admit_device(peer, address);
    }
    void on_connected(ConnectionId c, const std::string& peer, const std::string& a) override {
      r_.device_connected(c, peer, a);
    }
    void on_message(ConnectionId c, std::string_view text) override { r_.device_message(c, text); }
    void on_closed(ConnectionId c) override { r_.device_closed(c); }

   private:
    GatewayRouter& r_;
  };
  class LinkSide final : public ChannelSink {
   public:
    explicit LinkSide(GatewayRouter& r) : r_(r) {}
    Result<std::string> identify(SSL* ssl) override;
    Status admit(const std::string&, const std::string&) override { return {}; }
    void on_connected(ConnectionId c, const std::string&, const std::string& a) override {
      r_.link_connected(c, a);
    }
    void on_message(ConnectionId c, std::string_view text) override { r_.link_message(c, text); }
    void on_closed(ConnectionId c) override { r_.link_closed(c); }

   private:
    GatewayRouter& r_;
  };

  Status admit_device(const std::string& device, const std::string& address);
  void device_connected(ConnectionId c, const std::string& device, const std::string& address);
  void device_message(ConnectionId c, std::string_view text);
  void device_closed(ConnectionId c);
  void link_connected(ConnectionId c, const std::string& address);
  void link_message(ConnectionId c, std::string_view text);
  void link_closed(ConnectionId c);

  void to_link(const protocol::LinkMessage& message);
  void send_gateway_status(ConnectionId c, bool server_connected);
  void announce(ConnectionId c, const DeviceChannel& channel);
  void apply_allow(protocol::LinkAllow allow);
  void close_device(const std::string& device, int code, const std::string& reason);
  void answer_http(const protocol::LinkHttpResult& result);
  void fail_waiting_http(int status, const std::string& why);

  UpTransport& transport_;
  GatewayRouterSettings settings_;
  DeviceSide devices_{*this};
  LinkSide link_side_{*this};
  TunnelHooks tunnels_;
  std::optional<ConnectionId> link_;
  std::unordered_map<ConnectionId, DeviceChannel> channels_;
  std::unordered_map<std::string, ConnectionId> channel_of_device_;
  std::unordered_set<std::string> allowed_;
  std::unordered_set<std::string> incoming_list_;  // a reset list being received
  bool receiving_list_ = false;
  bool list_loaded_ = false;
  std::unordered_map<std::uint64_t, PendingHttp> http_;
  std::uint64_t next_http_id_ = 1;
  std::uint64_t next_status_id_ = 1;
  GatewayCounters counters_;
};

}  // namespace tether::server
