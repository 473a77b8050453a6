// ClusterBus on PostgreSQL (docs/architecture.md, "Scale-out"): three tables beside the
// store's (cluster_instances, cluster_presence, cluster_messages) and one LISTEN channel per
// instance, on a connection of its own whose socket is watched by the process's lws loop.
//
// Times are the database's (now()), so that the clocks of the instances' hosts do not decide
// who is alive. Statements are synchronous like the store's: a round trip on a LAN is a
// fraction of a millisecond, and presence is written in batches, not per device.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/LwsFdWatcher.h"
#include "common/LwsLoop.h"
#include "server/ClusterBus.h"
#include "server/PgHandles.h"

namespace tether::server {

struct PgClusterSettings {
  std::string url;         // store.url: postgresql://...
  std::string public_url;  // this instance's wss://HOST:PORT
  std::chrono::seconds heartbeat_interval{2};
  // An instance whose heartbeat is older than this is dead: its devices count as offline
  // and its rows are removed.
  std::chrono::seconds dead_after{10};
};

class PgClusterBus final : public ClusterBus {
 public:
  // Connects, creates the cluster tables if needed (under an advisory lock, so that instances
  // starting at once do not race), and announces this instance with a new random id.
  [[nodiscard]] static Result<std::unique_ptr<PgClusterBus>> open(PgClusterSettings settings);
  ~PgClusterBus() override;
  PgClusterBus(const PgClusterBus&) = delete;
  PgClusterBus& operator=(const PgClusterBus&) = delete;

  // Watches the connection on the loop of `context` (notifications wake the instance).
  [[nodiscard]] Status start(lws_context* context);
  // Once a second from the loop: heartbeat, mailbox poll (a backstop for lost wake-ups),
  // removal of dead instances, reconnection after the database went away.
  void tick();
  // The instance is stopping: its presence and its row go at once, so that its devices count
  // as offline (and reconnect elsewhere) without waiting for dead_after. Nothing is written
  // afterwards.
  void stop();

  // After the connection came back (or this instance was taken for dead and removed), every
  // device it holds must be announced again: the handler calls set_present for each.
  void set_rejoin_handler(std::function<void()> handler) { rejoin_ = std::move(handler); }
  // Problems the edges log (reconnects, failed writes); library code does not log.
  void set_problem_handler(std::function<void(const std::string&)> handler) {
    problem_ = std::move(handler);
  }

  [[nodiscard]] const std::string& instance_id() const noexcept override { return id_; }
  void set_present(const std::string& device_id, const std::string& connected_via) override;
  void clear_present(const std::string& device_id) override;
  [[nodiscard]] Result<std::optional<ClusterPresence>> locate(
      const std::string& device_id) override;
  [[nodiscard]] Result<std::unordered_map<std::string, ClusterPresence>> remote_presence() override;
  [[nodiscard]] Result<std::vector<ClusterInstance>> live_instances() override;
  [[nodiscard]] Status send(const std::string& to_instance, const std::string& message) override;
  void set_receiver(Receiver receiver) override { receiver_ = std::move(receiver); }

  // Whether this instance is the one that links to the gateways: the holder of a session
  // advisory lock, which the database releases when the holder's connection ends (it died or
  // lost the database). Tries to take it when not held.
  [[nodiscard]] bool lead_gateways();
  [[nodiscard]] bool connected() const noexcept { return connected_; }

  // Writes the presence changes not yet written (also done by a short timer after a change).
  [[nodiscard]] Status flush_presence();

 private:
  using ConnPtr = PgConnPtr;
  using ResultPtr = PgResultPtr;

  explicit PgClusterBus(PgClusterSettings settings) : settings_(std::move(settings)) {}
  [[nodiscard]] Status connect();
  [[nodiscard]] Result<ResultPtr> exec(const char* sql, const std::vector<std::string>& params);
  [[nodiscard]] Status heartbeat();
  [[nodiscard]] Status watch();
  void on_readable();
  void note_notifications();
  void fetch_messages();
  void purge_dead();
  void broken(const std::string& why);
  void report(const std::string& problem) const;

  PgClusterSettings settings_;
  std::string id_;
  std::string channel_;  // LISTEN channel: tether_<id>
  ConnPtr conn_;
  bool connected_ = false;
  bool stopped_ = false;
  bool leading_gateways_ = false;
  lws_context* context_ = nullptr;
  lws_vhost* vhost_ = nullptr;
  std::unique_ptr<LwsFdWatcher> watcher_;
  std::unique_ptr<LwsTimer> soon_;  // flush and mailbox fetch shortly after a change
  bool fetch_due_ = false;
  std::chrono::steady_clock::time_point next_heartbeat_{};
  std::chrono::steady_clock::time_point next_reconnect_{};
  // device id → connected_via (present) or nullopt (gone), not yet written.
  std::unordered_map<std::string, std::optional<std::string>> unwritten_;
  Receiver receiver_;
  std::function<void()> rejoin_;
  std::function<void(const std::string&)> problem_;
};

}  // namespace tether::server
