#include "server/RegistrationPolicy.h"

#include <algorithm>

namespace tether::server {

void PendingRegistrations::add(const std::string& address, const std::string& mac,
                               Clock::time_point expires) {
  std::erase_if(entries_, [&](const Entry& e) { return e.address == address; });
  if (entries_.size() >= max_entries_ && !entries_.empty()) {
    auto oldest =
        std::min_element(entries_.begin(), entries_.end(),
                         [](const Entry& a, const Entry& b) { return a.expires < b.expires; });
    entries_.erase(oldest);
  }
  entries_.push_back({address, mac, expires});
}

bool PendingRegistrations::take(const std::string& address, const std::string& mac,
                                Clock::time_point now) {
  std::erase_if(entries_, [&](const Entry& e) { return e.expires <= now; });
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) {
    return (!address.empty() && e.address == address) || (!mac.empty() && e.mac == mac);
  });
  if (it == entries_.end()) return false;
  entries_.erase(it);
  return true;
}

protocol::TokenStatus decide_token(const TokenRequestFacts& facts) noexcept {
  using protocol::TokenStatus;
  if (facts.rate_limited) return TokenStatus::kRefused;
  if (!facts.fingerprint_zero && !facts.fingerprint_matches) return TokenStatus::kWrongServer;
  if (facts.pending) return TokenStatus::kIssued;
  if (facts.auto_registration && facts.fingerprint_zero) return TokenStatus::kIssued;
  return TokenStatus::kDisabled;
}

const char* token_status_name(protocol::TokenStatus status) noexcept {
  switch (status) {
    case protocol::TokenStatus::kIssued: return "issued";
    case protocol::TokenStatus::kDisabled: return "disabled";
    case protocol::TokenStatus::kRefused: return "refused";
    case protocol::TokenStatus::kWrongServer: return "wrong_server";
  }
  return "unknown";
}

}  // namespace tether::server
