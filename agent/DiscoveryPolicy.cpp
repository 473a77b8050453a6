#include "agent/DiscoveryPolicy.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdlib>

namespace tether::agent {

Result<std::uint32_t> parse_ipv4(std::string_view text) {
  in_addr a{};
  const std::string s(text);
  if (s.empty() || s.size() > 15 || ::inet_pton(AF_INET, s.c_str(), &a) != 1) {
    return make_error(Errc::kBadValue, "not an IPv4 address: " + s);
  }
  return ntohl(a.s_addr);
}

std::string ipv4_to_string(std::uint32_t ip) {
  in_addr a{};
  a.s_addr = htonl(ip);
  char buf[INET_ADDRSTRLEN] = {0};
  ::inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

Result<Ipv4Net> parse_ipv4_cidr(std::string_view text) {
  const auto slash = text.find('/');
  TETHER_ASSIGN_OR_RETURN(std::uint32_t address, parse_ipv4(text.substr(0, slash)));
  int prefix = 32;
  if (slash != std::string_view::npos) {
    const std::string p(text.substr(slash + 1));
    if (p.empty() || p.size() > 2 || !std::all_of(p.begin(), p.end(), ::isdigit)) {
      return make_error(Errc::kBadValue, "bad prefix length in " + std::string(text));
    }
    prefix = std::atoi(p.c_str());
    if (prefix > 32)
      return make_error(Errc::kBadValue, "bad prefix length in " + std::string(text));
  }
  const std::uint32_t mask = prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix);
  return Ipv4Net{address & mask, mask};
}

Result<std::vector<Ipv4Net>> parse_ipv4_cidr_list(std::string_view text) {
  std::vector<Ipv4Net> out;
  std::size_t i = 0;
  while (i < text.size()) {
    const auto end = text.find_first_of(", ", i);
    const auto item = text.substr(i, end == std::string_view::npos ? text.npos : end - i);
    if (!item.empty()) {
      TETHER_ASSIGN_OR_RETURN(Ipv4Net net, parse_ipv4_cidr(item));
      out.push_back(net);
    }
    if (end == std::string_view::npos) break;
    i = end + 1;
  }
  return out;
}

std::string_view drop_reason_name(DropReason reason) noexcept {
  switch (reason) {
    case DropReason::kMalformed: return "malformed";
    case DropReason::kNotAProbe: return "not_a_probe";
    case DropReason::kReservedPort: return "reserved_port";
    case DropReason::kOwnPort: return "own_port";
    case DropReason::kBadSource: return "bad_source";
    case DropReason::kOffLink: return "off_link";
    case DropReason::kRateSource: return "rate_source";
    case DropReason::kRateTotal: return "rate_total";
    case DropReason::kNotRegistered: return "not_registered";
    case DropReason::kWrongDevice: return "wrong_device";
    case DropReason::kNoAuthenticator: return "no_authenticator";
    case DropReason::kBadAuthenticator: return "bad_authenticator";
    case DropReason::kStale: return "stale";
    case DropReason::kReplay: return "replay";
    case DropReason::kReplyTooLarge: return "reply_too_large";
    case DropReason::kSendFailed: return "send_failed";
  }
  return "unknown";
}

bool TokenBucket::take(double now_s) noexcept {
  if (now_s > last_) {
    tokens_ = std::min(burst_, tokens_ + (now_s - last_) * rate_);
    last_ = now_s;
  }
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

bool TokenBucket::full(double now_s) const noexcept {
  const double t = now_s > last_ ? tokens_ + (now_s - last_) * rate_ : tokens_;
  return t >= burst_;
}

std::optional<DropReason> DiscoveryPolicy::check_source(
    std::uint32_t source, std::span<const Ipv4Net> local_subnets) const {
  const std::uint32_t top = source >> 24;
  const bool loopback = top == 127;
  if (source == 0 || source == 0xFFFFFFFFu || top == 0 || top >= 224) {
    return DropReason::kBadSource;  // unspecified, limited broadcast, "this network",
                                    // multicast and class E
  }
  if (loopback && !options_.allow_loopback) return DropReason::kBadSource;
  bool on_link = false;
  for (const Ipv4Net& net : local_subnets) {
    if (!net.contains(source)) continue;
    // A directed broadcast (or the network address) of one of our subnets names no host.
    if (net.mask < 0xFFFFFFFEu &&
        (source == net.broadcast() || source == (net.address & net.mask))) {
      return DropReason::kBadSource;
    }
    on_link = true;
  }
  if (on_link) return std::nullopt;
  for (const Ipv4Net& net : options_.management_networks) {
    if (net.contains(source)) return std::nullopt;
  }
  return DropReason::kOffLink;
}

std::optional<DropReason> DiscoveryPolicy::check_reply_port(std::uint16_t port) const {
  if (port < 1024) return DropReason::kReservedPort;
  if (std::find(options_.own_ports.begin(), options_.own_ports.end(), port) !=
      options_.own_ports.end()) {
    return DropReason::kOwnPort;
  }
  return std::nullopt;
}

std::optional<DropReason> DiscoveryPolicy::take_rate(std::uint32_t source, double now_s) {
  const DiscoveryLimits& l = options_.limits;
  if (!total_) total_.emplace(l.rate_total, l.burst_total, now_s);
  const std::uint32_t network = source & 0xFFFFFF00u;
  auto it = per_source_.find(network);
  if (it == per_source_.end()) {
    if (per_source_.size() >= options_.max_tracked_sources) {
      // Forget networks whose buckets have refilled: they behave like new ones anyway.
      std::erase_if(per_source_, [now_s](const auto& kv) { return kv.second.full(now_s); });
      if (per_source_.size() >= options_.max_tracked_sources) return DropReason::kRateTotal;
    }
    it = per_source_.emplace(network, TokenBucket(l.rate_per_source, l.burst_per_source, now_s))
             .first;
  }
  // Check the overall bucket first only in effect: a source over its own limit must not use
  // up the shared budget, and a refused probe takes nothing from the source's.
  TokenBucket source_copy = it->second;
  if (!source_copy.take(now_s)) {
    it->second = source_copy;
    return DropReason::kRateSource;
  }
  if (!total_->take(now_s)) return DropReason::kRateTotal;
  it->second = source_copy;
  return std::nullopt;
}

std::optional<DropReason> DiscoveryPolicy::check_online_probe(const protocol::OnlineProbe& probe,
                                                              const OnlineIdentity& identity,
                                                              std::int64_t unix_now, double now_s) {
  if (identity.online_key.empty()) return DropReason::kNotRegistered;
  if (probe.device_id != identity.device_id) return DropReason::kWrongDevice;
  if (!probe.authenticator) return DropReason::kNoAuthenticator;
  if (!protocol::verify_authenticator(identity.online_key, probe.signed_bytes,
                                      *probe.authenticator)) {
    return DropReason::kBadAuthenticator;
  }
  const std::int64_t ts = static_cast<std::int64_t>(
      std::min<std::uint64_t>(probe.timestamp, static_cast<std::uint64_t>(std::int64_t{1} << 62)));
  if (ts > unix_now + options_.online_clock_skew_s ||
      ts < unix_now - options_.online_clock_skew_s) {
    return DropReason::kStale;
  }
  // (Should the clock step back, an entry lingers behind a later one: refused longer, never
  // forgotten early.)
  while (!seen_order_.empty() && seen_order_.front().first <= now_s) {
    seen_.erase(seen_order_.front().second);
    seen_order_.pop_front();
  }
  if (seen_.contains(*probe.authenticator)) return DropReason::kReplay;
  if (seen_.size() >= options_.replay_cache_size) {
    // Full of live entries: refusing is the safe side (a flood of valid probes needs the key).
    return DropReason::kReplay;
  }
  // A probe is valid for 2 x skew around its timestamp; remember it that long.
  seen_.insert(*probe.authenticator);
  seen_order_.emplace_back(now_s + static_cast<double>(2 * options_.online_clock_skew_s) + 1.0,
                           *probe.authenticator);
  return std::nullopt;
}

}  // namespace tether::agent
