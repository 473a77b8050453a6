// The devices of every server instance on one database, as one LiveDevices
// (docs/architecture.md, "Scale-out"). A device whose channel this instance holds is served by
// the local DeviceHub; one held by another live instance is reached through that instance's
// mailbox (ClusterBus): requests (commands, settings, wake relays), disconnects (revocation)
// and shadowing starts go there, and the answers come back the same way.
//
// Shadowing is redirected, not relayed twice: the session is made on the instance that holds
// the device, so the device's tunnel and the viewer's both go to that instance's own
// public_url and meet there; the instance that took the REST call only passes the answer (the
// viewer URL) back.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/ClusterBus.h"
#include "server/DeviceHub.h"
#include "server/HttpMessage.h"
#include "server/LiveDevices.h"
#include "server/ShadowService.h"

namespace tether::server {

struct ClusterDevicesSettings {
  // How long a request passed to another instance may take: that instance's own request
  // timeout plus this margin, after which the caller gets kTimeout.
  std::chrono::seconds request_timeout{30};
  std::chrono::seconds margin{5};
};

// What the instance counts for /metrics and logs.
struct ClusterCounters {
  std::uint64_t forwarded = 0;         // requests and shadow starts sent to other instances
  std::uint64_t served_for_peers = 0;  // ... received from them
  std::uint64_t forward_failures = 0;  // no answer in time, or the database refused
};

class ClusterDevices final : public LiveDevices {
 public:
  using SteadyClock = std::chrono::steady_clock;
  // Runs a shadowing start passed on by another instance (ShadowService::start).
  using ShadowStarter = std::function<void(const ShadowService::StartRequest&, HttpRespond)>;

  ClusterDevices(DeviceHub& hub, ClusterBus& bus, ClusterDevicesSettings settings);
  // Requests still waiting for another instance get kUnavailable (REST: 503).
  ~ClusterDevices() override;
  ClusterDevices(const ClusterDevices&) = delete;
  ClusterDevices& operator=(const ClusterDevices&) = delete;

  // ---- LiveDevices ------------------------------------------------------------------------
  // A device held by another instance has only connected_via, gateway and instance set: its
  // address, last_seen and status are the stored ones (that instance writes them in batches).
  std::optional<LiveDeviceState> live_state(const std::string& id) const override;
  std::unordered_map<std::string, LiveDeviceState> live_states(
      const std::vector<std::string>& ids) const override;
  void disconnect(const std::string& id, int close_code, const std::string& reason) override;
  void request(const std::string& id, protocol::UpBody body, RequestDone done) override;

  // ---- shadowing ---------------------------------------------------------------------------
  void set_shadow_starter(ShadowStarter starter) { shadow_starter_ = std::move(starter); }
  // When another live instance holds the device, passes the start there and returns true:
  // `respond` gets that instance's answer (or 504/503). False: start it here.
  bool forward_shadow_start(const ShadowService::StartRequest& request, HttpRespond& respond);
  // Whether a browser's Origin is the web app of another live instance (its viewer
  // WebSocket comes here because this instance holds the device).
  [[nodiscard]] bool peer_origin(const std::string& origin) const;

  // ---- questions to every other instance ------------------------------------------------
  // What this instance answers when another gathers `what` (e.g. "sessions": its shadowing
  // sessions; "session_end": whether it ended args["session"]).
  using LocalAnswer =
      std::function<nlohmann::json(const std::string& what, const nlohmann::json& args)>;
  void set_local_answer(LocalAnswer answer) { local_answer_ = std::move(answer); }
  // Asks every other live instance; `done` gets the answers that came within a few seconds
  // (at once, with none, when there is no other instance; incomplete when the database is
  // unreachable or an instance did not answer).
  struct Gathered {
    std::vector<nlohmann::json> answers;
    bool complete = true;  // every instance asked answered in time
  };
  void gather(const std::string& what, nlohmann::json args, std::function<void(Gathered)> done);

  // ---- the loop -----------------------------------------------------------------------------
  // The hub's presence hook: the device's channel here is greeted (via set) or gone (nullopt).
  void on_presence(const std::string& device_id, const std::optional<std::string>& via);
  // The bus's rejoin hook: announces every device this instance holds.
  void republish();
  // A message from this instance's mailbox.
  void on_message(const std::string& text);
  // Ends requests other instances did not answer in time; refreshes the peers' origins.
  void tick(SteadyClock::time_point now);

  [[nodiscard]] const ClusterCounters& counters() const noexcept { return counters_; }
  [[nodiscard]] std::size_t pending_count() const noexcept { return pending_.size(); }

 private:
  struct Pending {
    std::string instance;
    RequestDone done;     // a request
    HttpRespond respond;  // a shadowing start
    SteadyClock::time_point deadline;
  };

  std::optional<ClusterPresence> remote_holder(const std::string& id) const;
  std::uint64_t add_pending(Pending pending);
  void fail(Pending& pending, const Error& error);
  [[nodiscard]] Status post(const std::string& instance, nlohmann::json message);
  void reply(const std::string& instance, nlohmann::json message);
  void serve_request(const std::string& from, std::uint64_t rid, const std::string& device,
                     const std::string& envelope);
  void serve_shadow_start(const std::string& from, std::uint64_t rid,
                          ShadowService::StartRequest request);

  DeviceHub& hub_;
  ClusterBus& bus_;
  ClusterDevicesSettings settings_;
  ShadowStarter shadow_starter_;
  bool serving_peer_ = false;  // inside shadow_starter_ for another instance
  struct Gather {
    std::vector<std::string> waiting;  // instances that have not answered
    Gathered gathered;
    std::function<void(Gathered)> done;
    SteadyClock::time_point deadline;
  };
  void on_gathered(std::uint64_t rid, const std::string& from, nlohmann::json value);

  std::unordered_map<std::uint64_t, Pending> pending_;
  std::unordered_map<std::uint64_t, Gather> gathers_;
  LocalAnswer local_answer_;
  std::uint64_t next_rid_ = 1;
  std::vector<std::string> peer_origins_;  // https://HOST:PORT of the other live instances
  SteadyClock::time_point next_origin_refresh_{};
  mutable ClusterCounters counters_;
};

// The web origin (https://HOST[:PORT]) of a wss:// public URL; "" when it is not one.
[[nodiscard]] std::string web_origin_of(const std::string& public_url);

}  // namespace tether::server
