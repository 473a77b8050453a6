// Scan jobs (tetherctl scan, POST /api/v1/scan): UDP probes to broadcast addresses or to
// every host of a range, or TCP connections to port 30005 across a range (bounded
// concurrency); then, with `register`, a registration request to each unregistered device
// found, a pending registration for the token listener, and a wait for the device to enroll
// and come online. Everything runs on the server's lws loop; REST polls the job's progress.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/LwsLoop.h"
#include "common/Result.h"
#include "server/DatagramSocket.h"
#include "server/Ipv4Subnet.h"
#include "server/LiveDevices.h"
#include "server/RegistrationPolicy.h"
#include "server/Store.h"
#include "server/TcpExchange.h"

namespace tether::server {

struct ScanRequest {
  std::optional<Ipv4Address> broadcast;  // neither: every local interface's broadcast
  std::optional<Ipv4Subnet> range;
  bool tcp = false;  // only with a range
  std::chrono::milliseconds timeout{2000};
  bool register_devices = false;
  std::chrono::milliseconds register_wait{60000};
};

struct ScannerOptions {
  std::uint16_t device_port = 30005;
  std::uint16_t registration_port = 30001;
  protocol::Sha256 ca_fingerprint{};
  std::size_t tcp_concurrency = 64;
  std::size_t udp_probes_per_tick = 256;
  std::chrono::seconds pending_registration_ttl{600};
};

// The local interfaces' IPv4 directed broadcast addresses (no loopback).
[[nodiscard]] std::vector<Ipv4Address> local_broadcast_addresses();

class Scanner {
 public:
  Scanner(lws_context* context, lws_vhost* vhost, DatagramSocket& socket, Store& store,
          LiveDevices& live, PendingRegistrations& pending, ScannerOptions options);
  ~Scanner();
  Scanner(const Scanner&) = delete;
  Scanner& operator=(const Scanner&) = delete;

  // The job's id. kUnavailable when too many scans are running; kTooLarge for a range wider
  // than a /16; kBadValue for bad combinations.
  [[nodiscard]] Result<std::string> start(const ScanRequest& request);
  // The job's progress and results (docs/api.md); nullopt for an unknown id.
  [[nodiscard]] std::optional<nlohmann::json> describe(const std::string& id) const;
  // The token listener issued a token to a device (for a pending registration).
  void on_token_issued(const std::string& device_id, const std::string& address,
                       const std::string& mac);

 private:
  struct Found;
  struct Job;
  void tick(Job& job);
  void send_udp_batch(Job& job);
  void pump_tcp(Job& job);
  void record(Job& job, Ipv4Address address, const protocol::ScanReply& reply, const char* via);
  void start_registrations(Job& job);
  void finish(Job& job);
  void reap();

  lws_context* context_;
  lws_vhost* vhost_;
  DatagramSocket& socket_;
  Store& store_;
  LiveDevices& live_;
  PendingRegistrations& pending_;
  ScannerOptions options_;
  std::map<std::string, std::unique_ptr<Job>> jobs_;
  std::vector<std::string> job_order_;
  std::vector<std::unique_ptr<TcpExchange>> finished_exchanges_;
  std::unique_ptr<LwsTimer> reaper_;
};

}  // namespace tether::server
