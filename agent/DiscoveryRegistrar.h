// Scan-and-register and auto-registration on the device: decides registration requests that
// came in on TCP 30005, asks the named server on its registration port (30001) for an
// enrollment token (TokenRequest/TokenReply, docs/protocol.md §3.5), and enrolls with it
// through agent/Enroller. Auto-registration (discovery.auto_register) asks a configured server
// or the one the DNS name `tether-server` resolves to, with an all-zero fingerprint.
//
// Blocking, on purpose and bounded: the token exchange (connect + request + reply, at most
// `token_timeout`) and the enrollment's HTTPS request (Enroller, at most its 15 s) run on
// the loop thread. They happen once in a device's life, only while it is not enrolled, so no
// UP channel exists that could starve; the only cost is that scan replies wait meanwhile.
// Re-using the blocking Enroller keeps one audited enrollment path (fingerprint checked before
// the secret leaves the device) instead of a second, asynchronous copy.
//
// Name resolution for `tether-server` uses getaddrinfo_a (glibc) with SIGEV_NONE, polled from
// a loop timer: glibc's resolver has no other non-blocking interface, and a DNS server that
// does not answer must not stall the loop for its retry timeouts. Its helper thread belongs
// to glibc; none of our code runs off the loop thread.
#pragma once

#include <netdb.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "agent/AgentConfig.h"
#include "common/LwsLoop.h"
#include "common/Result.h"
#include "protocol/DiscoveryDatagram.h"

namespace tether::agent {

enum class AutoRegister { kOff, kOn, kDns };

struct RegistrarOptions {
  bool accept_registration = true;
  AutoRegister auto_register = AutoRegister::kDns;
  std::string registration_server;  // host[:port] for kOn
  std::string dns_name = "tether-server";
  std::chrono::milliseconds token_timeout{5000};
  std::chrono::seconds auto_first{2};
  std::chrono::seconds auto_backoff_cap{600};
};

// What the registrar needs to know about the device and the request's server.
struct RegistrationTarget {
  std::string host;
  std::uint16_t port = 30001;
  protocol::Sha256 fingerprint{};  // all zero: auto-registration (none to check in advance)
};

// The decision for a registration request, given the device's state. Pure, for tests.
// `trusted` are the CA fingerprints (hex) the device trusts when enrolled.
[[nodiscard]] protocol::RegisterStatus decide_register_request(
    const protocol::RegisterRequest& request, bool enrolled,
    const std::vector<std::string>& trusted, bool accept_registration, bool busy);

// Asks `target` for an enrollment token (blocking, at most `timeout`). Returns the token on
// kIssued; an error naming the status otherwise.
[[nodiscard]] Result<std::string> request_enrollment_token(const RegistrationTarget& target,
                                                           const protocol::TokenRequest& request,
                                                           std::chrono::milliseconds timeout);

class DiscoveryRegistrar {
 public:
  DiscoveryRegistrar(lws_context* ctx, StatePaths paths, RegistrarOptions options,
                     std::function<void()> on_enrolled);
  ~DiscoveryRegistrar();

  // The handler for DiscoveryTcpListener: decides, and on kAccepted schedules the token
  // request and enrollment right after the reply has gone out.
  [[nodiscard]] protocol::RegisterStatus on_register_request(
      const protocol::RegisterRequest& request, std::uint32_t source);
  // Starts (or stops, when the device is enrolled or auto-registration is off) the periodic
  // auto-registration attempts.
  void update_auto_registration();
  [[nodiscard]] bool busy() const noexcept { return pending_.has_value(); }

 private:
  void run_pending();
  void enroll_from(const RegistrationTarget& target, const char* how);
  void auto_attempt();
  void poll_dns();
  void schedule_auto(bool failed);
  [[nodiscard]] bool enrolled() const;

  StatePaths paths_;
  RegistrarOptions options_;
  std::function<void()> on_enrolled_;
  std::optional<RegistrationTarget> pending_;
  LwsTimer work_timer_;
  LwsTimer auto_timer_;
  LwsTimer dns_timer_;
  std::chrono::seconds auto_delay_{0};
  // An outstanding getaddrinfo_a request (owned: freed when done or cancelled).
  struct DnsRequest;
  std::unique_ptr<DnsRequest> dns_;
  std::chrono::steady_clock::time_point dns_started_;
};

}  // namespace tether::agent
