// Who gets a registration token on port 30001 (docs/protocol.md §3.5): the registrations a
// scan asked for (pending until the device asks, or until they expire) and the decision for
// one token request. Pure logic: the listener does the I/O.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "protocol/DiscoveryDatagram.h"

namespace tether::server {

// Registrations requested by `tetherctl scan --register`, matched by the token request's
// source address or by its MAC (a device may ask from another interface or address).
class PendingRegistrations {
 public:
  using Clock = std::chrono::steady_clock;

  explicit PendingRegistrations(std::size_t max_entries = 4096) : max_entries_(max_entries) {}

  // `address`: IPv4 text; `mac`: canonical text ("" when unknown). Replaces an entry for the
  // same address. The oldest entry goes when full.
  void add(const std::string& address, const std::string& mac, Clock::time_point expires);
  // Takes (removes) the entry matching the address or the MAC; false when none (expired
  // entries never match).
  [[nodiscard]] bool take(const std::string& address, const std::string& mac,
                          Clock::time_point now);
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

 private:
  struct Entry {
    std::string address;
    std::string mac;
    Clock::time_point expires;
  };
  std::size_t max_entries_;
  std::vector<Entry> entries_;
};

struct TokenRequestFacts {
  bool rate_limited = false;
  bool fingerprint_zero = false;     // auto-registration: the device names no CA
  bool fingerprint_matches = false;  // names this server's CA
  bool pending = false;              // a scan asked this device to register
  bool auto_registration = false;    // enabled by the admin
};

// kRefused when rate limited; kWrongServer for another CA's fingerprint; kIssued for a
// pending registration or (fingerprint zero) when auto-registration is on; else kDisabled.
[[nodiscard]] protocol::TokenStatus decide_token(const TokenRequestFacts& facts) noexcept;

[[nodiscard]] const char* token_status_name(protocol::TokenStatus status) noexcept;

}  // namespace tether::server
