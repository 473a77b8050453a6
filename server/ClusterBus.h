// What server instances that share one database know of each other (docs/architecture.md,
// "Scale-out"): which instances are alive, which instance holds each device's channel, and a
// mailbox per instance for the requests one instance passes to another. PgClusterBus is the
// PostgreSQL implementation; the unit tests use an in-memory one.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/Result.h"

namespace tether::server {

struct ClusterInstance {
  std::string id;          // random, made at each start
  std::string public_url;  // wss://HOST:PORT, the instance's own address (server.public_url)
};

// Where a device's channel is, as the cluster table says.
struct ClusterPresence {
  std::string instance_id;
  std::string public_url;
  std::string connected_via;  // "direct" or "gateway:NAME", as on the holding instance
};

class ClusterBus {
 public:
  virtual ~ClusterBus() = default;

  [[nodiscard]] virtual const std::string& instance_id() const noexcept = 0;

  // This instance now holds (or no longer holds) the device's channel. Written in batches
  // (flush); a later call for the same device replaces an earlier one not yet written.
  virtual void set_present(const std::string& device_id, const std::string& connected_via) = 0;
  virtual void clear_present(const std::string& device_id) = 0;

  // The live instance holding the device's channel; nullopt when none does (offline, or its
  // instance stopped sending heartbeats).
  [[nodiscard]] virtual Result<std::optional<ClusterPresence>> locate(
      const std::string& device_id) = 0;
  // Every device held by a live instance other than this one, by device id.
  [[nodiscard]] virtual Result<std::unordered_map<std::string, ClusterPresence>>
  remote_presence() = 0;
  // The live instances, this one included.
  [[nodiscard]] virtual Result<std::vector<ClusterInstance>> live_instances() = 0;

  // Puts a message in another instance's mailbox and wakes it.
  [[nodiscard]] virtual Status send(const std::string& to_instance, const std::string& message) = 0;
  // Who reads this instance's mailbox: each message once, in the order sent.
  using Receiver = std::function<void(const std::string& message)>;
  virtual void set_receiver(Receiver receiver) = 0;
};

}  // namespace tether::server
