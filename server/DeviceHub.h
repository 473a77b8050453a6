// The server's side of the Unified Protocol: one channel per device, identified by its
// client certificate. Decodes messages, keeps the live state of every connected device in
// memory (written to the store in batches, never per heartbeat), answers hello and
// cert_renew, and sends requests (trust_update, the device's server settings after hello,
// and whatever the REST API asks for) whose results it correlates. Every request's `done`
// runs exactly once: with the result, on expiry, or when the channel goes away (also when
// the hub is closed or destroyed). It does no I/O itself: frames go through an UpTransport
// (HttpsServer), so it can be driven directly.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "protocol/PendingRequests.h"
#include "protocol/UpMessage.h"
#include "server/CertificateAuthority.h"
#include "server/ChannelSink.h"
#include "server/LiveDevices.h"
#include "server/Store.h"

namespace tether::server {

struct HubSettings {
  std::chrono::seconds status_interval{60};
  std::chrono::seconds request_timeout{30};
};

class DeviceHub final : public LiveDevices {
 public:
  using WallClock = std::function<std::int64_t()>;  // unix seconds
  using SteadyClock = std::chrono::steady_clock;

  DeviceHub(Store& store, const CertificateAuthority& ca, UpTransport& transport,
            HubSettings settings, WallClock wall_clock = {});
  // Requests still waiting get kUnavailable.
  ~DeviceHub() override;
  DeviceHub(const DeviceHub&) = delete;
  DeviceHub& operator=(const DeviceHub&) = delete;

  // Whether the device with this id (from its client certificate) may open a channel: it
  // must be known and neither revoked nor deleted.
  [[nodiscard]] Status admit(const std::string& device_id);

  // `gateway`: the name of the gateway the channel comes through, "" when direct.
  void on_connected(ConnectionId connection, const std::string& device_id,
                    const std::string& address, const std::string& gateway = {});
  void on_message(ConnectionId connection, std::string_view text);
  void on_closed(ConnectionId connection);

  // Ends requests whose results did not come in time (kTimeout).
  void expire_requests(SteadyClock::time_point now);
  // Writes the activity gathered since the last flush.
  [[nodiscard]] Status flush();
  // Closes every channel; their waiting requests get kUnavailable at once. Channels that
  // open afterwards (the server is stopping) are closed the same way as soon as they open.
  void close_all(int code, const std::string& reason);
  [[nodiscard]] std::size_t connection_count() const noexcept { return connections_.size(); }
  [[nodiscard]] std::size_t online_count() const;

  std::optional<LiveDeviceState> live_state(const std::string& id) const override;
  void disconnect(const std::string& id, int close_code, const std::string& reason) override;
  void request(const std::string& id, protocol::UpBody body, RequestDone done) override;

  // Sends a message that is not a request (shadow_stop) on the device's channel; false when
  // the device is offline.
  bool notify(const std::string& id, const protocol::UpBody& body);
  // Who hears the shadow_stop messages devices send (ShadowService): device id and body.
  using ShadowStopHandler = std::function<void(const std::string&, const protocol::ShadowStop&)>;
  void set_shadow_stop_handler(ShadowStopHandler handler) {
    shadow_stop_handler_ = std::move(handler);
  }
  // Who hears that a device's channel here is greeted (with how it is connected: "direct" or
  // "gateway:NAME") or gone (nullopt): the cluster's presence table (ClusterDevices).
  using PresenceHandler =
      std::function<void(const std::string&, const std::optional<std::string>&)>;
  void set_presence_handler(PresenceHandler handler) { presence_handler_ = std::move(handler); }
  // The greeted devices and how each is connected, to announce them again.
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> online_devices() const;

 private:
  struct PendingRequest {
    std::string what;  // for logs: "trust_update", "command reboot"
    RequestDone done;  // empty for the hub's own requests that need no answer
  };
  using Finished = std::vector<std::pair<RequestDone, Error>>;
  struct Connection {
    std::string device_id;
    std::string address;
    bool hello_done = false;
    protocol::PendingRequests<PendingRequest> pending{"s", 64};
  };
  struct LiveEntry {
    ConnectionId connection = 0;
    bool greeted = false;  // hello done: the device counts as online
    std::string address;
    std::string gateway;  // "" when direct
    std::int64_t last_seen = 0;
    std::string status_json;
    std::string stored_inventory_json;
  };

  void send(ConnectionId connection, const protocol::Envelope& envelope);
  void send_error(ConnectionId connection, const std::string& id, const Error& error);
  void handle(ConnectionId connection, Connection& conn, const protocol::Envelope& envelope,
              protocol::UpBody& body);
  void handle_hello(ConnectionId connection, Connection& conn, const std::string& id,
                    const protocol::Hello& hello);
  void handle_cert_renew(ConnectionId connection, Connection& conn, const std::string& id,
                         const protocol::CertRenew& renew);
  void handle_result(Connection& conn, const std::string& id, const protocol::ResultBody& result);
  void send_trust_update(ConnectionId connection, Connection& conn);
  void push_settings(ConnectionId connection, Connection& conn, const DeviceRecord& device);
  void on_settings_pushed(const std::string& device_id, const std::string& previous_error,
                          const Result<protocol::ResultBody>& result);
  // Sends a request on the connection and returns its id. When it cannot be sent (too many
  // wait), `done` (if any) gets the error before this returns it.
  Result<std::string> send_request(ConnectionId connection, Connection& conn,
                                   const protocol::UpBody& body, RequestDone done);
  // Takes every waiting request off the connection, to be failed with `error` by finish():
  // callbacks run only once the hub's own state is consistent, since they may call back in.
  static void drain(Connection& conn, const Error& error, Finished& out);
  static void finish(Finished& finished);
  void touch(const std::string& device_id, const std::string& address);
  void announce(const std::string& device_id, const LiveEntry* entry);
  std::int64_t now() const;

  Store& store_;
  const CertificateAuthority& ca_;
  UpTransport& transport_;
  HubSettings settings_;
  WallClock wall_clock_;
  std::unordered_map<ConnectionId, Connection> connections_;
  // Set by close_all: the close every newly opened channel gets (the server is stopping).
  std::optional<std::pair<int, std::string>> closing_;
  // The current channel of each connected device.
  std::unordered_map<std::string, LiveEntry> current_;
  // Activity not yet written to the store, by device id.
  std::unordered_map<std::string, DeviceActivity> unflushed_;
  ShadowStopHandler shadow_stop_handler_;
  PresenceHandler presence_handler_;
  std::uint64_t next_notification_ = 1;
};

}  // namespace tether::server
