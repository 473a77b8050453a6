// The server's LAN features in one place (docs/protocol.md §3–4, docs/api.md "LAN"): the
// registration-token listener (TCP 30001), scans, online checks and wake-on-LAN, all on the
// server's lws loop, and their REST routes. Created with the server; started once the loop
// exists; stopped before it goes.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/Result.h"
#include "protocol/DiscoveryDatagram.h"
#include "server/DatagramSocket.h"
#include "server/EnrollmentService.h"
#include "server/HttpMessage.h"
#include "server/LiveDevices.h"
#include "server/OnlineChecker.h"
#include "server/RegistrationListener.h"
#include "server/RegistrationPolicy.h"
#include "server/Scanner.h"
#include "server/Store.h"
#include "server/WakeService.h"

namespace tether::server {

struct LanSettings {
  std::string state_dir;                // auto-registration's switch is kept here
  std::string listen_host = "0.0.0.0";  // server.listen's host: also the 30001 bind address
  std::uint16_t registration_port = 30001;
  std::uint16_t device_port = 30005;
  std::string ca_fingerprint_hex;
  int registration_rate_per_minute = 30;           // per source; 10 times that overall
  std::chrono::seconds online_check_interval{60};  // 0: no background checks
  double wake_rate = 20;                           // devices per second
};

class LanDiscovery {
 public:
  LanDiscovery(LanSettings settings, Store& store, EnrollmentService& enrollment,
               LiveDevices& live);
  ~LanDiscovery();
  LanDiscovery(const LanDiscovery&) = delete;
  LanDiscovery& operator=(const LanDiscovery&) = delete;

  // Binds the registration port and the UDP socket on the loop of `context`.
  [[nodiscard]] Status start(lws_context* context);
  // Closes everything (before the loop's context is destroyed).
  void stop();

  // REST: true for the paths this class answers (after /api/v1/).
  [[nodiscard]] static bool owns(const std::vector<std::string>& parts);
  // The caller has authenticated the admin. nullopt: the answer comes later via `respond`.
  [[nodiscard]] std::optional<HttpResponse> route(const HttpRequest& request,
                                                  const std::vector<std::string>& parts,
                                                  HttpRespond respond);

  [[nodiscard]] bool auto_registration() const noexcept { return auto_registration_; }
  // Unix seconds of the device's last answer to an online probe; 0 when none.
  [[nodiscard]] std::int64_t last_seen_udp(const std::string& id) const;
  // For the metrics: null until started (and when starting failed).
  [[nodiscard]] const DatagramSocket* datagram_socket() const noexcept { return socket_.get(); }
  [[nodiscard]] const RegistrationListener* registration_listener() const noexcept {
    return listener_.get();
  }

 private:
  std::optional<HttpResponse> start_scan(const HttpRequest& request);
  std::optional<HttpResponse> online(const HttpRequest& request, HttpRespond respond);
  std::optional<HttpResponse> wake(const HttpRequest& request, HttpRespond respond);
  HttpResponse auto_registration_json() const;
  HttpResponse set_auto_registration(const HttpRequest& request);
  std::string auto_registration_path() const;

  LanSettings settings_;
  Store& store_;
  EnrollmentService& enrollment_;
  LiveDevices& live_;
  protocol::Sha256 ca_fingerprint_{};
  bool auto_registration_ = false;
  PendingRegistrations pending_;
  lws_vhost* vhost_ = nullptr;
  std::unique_ptr<DatagramSocket> socket_;
  std::unique_ptr<RegistrationListener> listener_;
  std::unique_ptr<Scanner> scanner_;
  std::unique_ptr<OnlineChecker> online_;
  std::unique_ptr<WakeService> wake_;
};

}  // namespace tether::server
