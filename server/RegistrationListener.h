// TCP port 30001: devices ask for a registration token here (docs/protocol.md §3.5), after a
// scan asked them to register or, when the admin enabled it, by themselves
// (auto-registration). One framed TokenRequest per connection, one TokenReply, then close.
// Rate limited per source address and overall; every request is logged and counted.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>

#include "common/LwsFdWatcher.h"
#include "common/LwsLoop.h"
#include "common/Result.h"
#include "common/UniqueFd.h"
#include "protocol/DiscoveryDatagram.h"
#include "server/EnrollmentService.h"
#include "server/RateLimiter.h"
#include "server/RegistrationPolicy.h"

namespace tether::server {

struct RegistrationListenerOptions {
  std::string host = "0.0.0.0";  // IPv4 address (or 0.0.0.0)
  std::uint16_t port = 30001;
  protocol::Sha256 ca_fingerprint{};
  int per_source_per_minute = 30;
  int total_per_minute = 300;
  std::chrono::seconds token_ttl{600};
  std::chrono::milliseconds connection_timeout{5000};
};

struct RegistrationCounters {
  std::uint64_t requests = 0;
  std::uint64_t issued = 0;
  std::uint64_t disabled = 0;
  std::uint64_t refused = 0;
  std::uint64_t wrong_server = 0;
  std::uint64_t malformed = 0;
};

class RegistrationListener {
 public:
  // A token went out: for the scan that asked the device to register.
  using IssuedHook = std::function<void(const std::string& device_id, const std::string& address,
                                        const std::string& mac)>;

  [[nodiscard]] static Result<std::unique_ptr<RegistrationListener>> start(
      lws_context* context, lws_vhost* vhost, RegistrationListenerOptions options,
      EnrollmentService& enrollment, PendingRegistrations& pending,
      std::function<bool()> auto_registration, IssuedHook on_issued);
  ~RegistrationListener();
  RegistrationListener(const RegistrationListener&) = delete;
  RegistrationListener& operator=(const RegistrationListener&) = delete;

  [[nodiscard]] const RegistrationCounters& counters() const noexcept { return counters_; }
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

 private:
  struct Connection {
    UniqueFd fd;
    std::string address;
    std::vector<std::uint8_t> in;
    std::vector<std::uint8_t> out;
    std::size_t sent = 0;
    bool closed = false;
    std::chrono::steady_clock::time_point deadline;
    std::unique_ptr<LwsFdWatcher> watcher;
  };

  RegistrationListener(lws_context* context, lws_vhost* vhost, RegistrationListenerOptions options,
                       EnrollmentService& enrollment, PendingRegistrations& pending,
                       std::function<bool()> auto_registration, IssuedHook on_issued);
  void on_acceptable();
  void on_readable(Connection& conn);
  void on_writable(Connection& conn);
  void answer(Connection& conn, const protocol::TokenRequest& request);
  void close(Connection& conn);
  void sweep();

  lws_context* context_;
  lws_vhost* vhost_;
  RegistrationListenerOptions options_;
  EnrollmentService& enrollment_;
  PendingRegistrations& pending_;
  std::function<bool()> auto_registration_;
  IssuedHook on_issued_;
  RateLimiter per_source_;
  RateLimiter total_;
  RegistrationCounters counters_;
  UniqueFd listen_fd_;
  std::uint16_t port_ = 0;
  std::list<Connection> connections_;
  std::unique_ptr<LwsTimer> sweeper_;
  std::unique_ptr<LwsFdWatcher> listen_watcher_;
};

}  // namespace tether::server
