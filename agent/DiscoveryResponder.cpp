#include "agent/DiscoveryResponder.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <openssl/sha.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

#include "agent/SystemInfo.h"
#include "common/FileIo.h"
#include "common/Hex.h"
#include "common/Log.h"

namespace tether::agent {

double monotonic_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Result<std::vector<LocalInterface>> read_local_interfaces() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    return make_error(Errc::kIo, std::string("getifaddrs: ") + std::strerror(errno));
  }
  std::vector<LocalInterface> out;
  auto entry = [&out](const char* name) -> LocalInterface& {
    for (auto& i : out) {
      if (i.name == name) return i;
    }
    LocalInterface& i = out.emplace_back();
    i.name = name;
    i.index = ::if_nametoindex(name);
    return i;
  };
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_name == nullptr || (a->ifa_flags & IFF_UP) == 0) continue;
    if (a->ifa_addr->sa_family == AF_PACKET) {
      const auto* ll = reinterpret_cast<const sockaddr_ll*>(a->ifa_addr);
      if (ll->sll_halen == 6) {
        protocol::MacAddress::Bytes b{};
        std::memcpy(b.data(), ll->sll_addr, 6);
        if (protocol::MacAddress::from_bytes(b).ok()) entry(a->ifa_name).mac = b;
      }
    } else if (a->ifa_addr->sa_family == AF_INET && a->ifa_netmask != nullptr) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
      const auto* mask = reinterpret_cast<const sockaddr_in*>(a->ifa_netmask);
      LocalInterface& i = entry(a->ifa_name);
      const std::uint32_t ip = ntohl(sin->sin_addr.s_addr);
      const std::uint32_t m = ntohl(mask->sin_addr.s_addr);
      i.addresses.push_back(ip);
      i.subnets.push_back(Ipv4Net{ip & m, m});
    }
  }
  ::freeifaddrs(list);
  return out;
}

std::string read_unit_id() {
  const auto macs = read_macs();
  if (!macs.empty()) return macs.front();
  auto id = read_file("/etc/machine-id", 256);
  if (id.ok() && !id->empty()) {
    std::uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(id->data()), id->size(), digest);
    return "mid-" + hex_encode(std::span<const std::uint8_t>(digest, 8));
  }
  return "unknown";
}

Result<std::vector<std::uint8_t>> build_scan_reply(const protocol::ScanProbe& probe,
                                                   std::size_t probe_size,
                                                   const DiscoverySelf& self,
                                                   const protocol::MacAddress::Bytes& mac) {
  protocol::ScanReply reply;
  reply.nonce = probe.nonce;
  reply.registered = self.registered;
  reply.accepts_registration = self.accepts_registration;
  reply.mac = mac;
  reply.unit_id = self.unit_id.substr(0, 64);
  reply.hostname = self.hostname.substr(0, 253);
  reply.product = kProductName;
  reply.version = self.version.substr(0, 64);
  if (self.registered)
    reply.server_fingerprint = self.server_fingerprint.value_or(protocol::Sha256{});
  return protocol::encode_scan_reply(reply, probe_size);
}

Result<std::vector<std::uint8_t>> build_online_reply(const protocol::OnlineProbe& probe,
                                                     std::size_t probe_size,
                                                     const OnlineIdentity& identity) {
  protocol::OnlineReply reply;
  reply.nonce = probe.nonce;
  reply.online = true;
  reply.device_id = identity.device_id;
  return protocol::encode_online_reply(reply, probe_size, identity.online_key);
}

DiscoveryResponder::DiscoveryResponder(lws_context* ctx, DiscoveryResponderOptions options,
                                       DiscoverySelfProvider self)
    : options_(std::move(options)),
      self_(std::move(self)),
      policy_(options_.policy),
      stats_timer_(ctx, [this] { write_stats(); }) {}

DiscoveryResponder::~DiscoveryResponder() = default;

Result<std::unique_ptr<DiscoveryResponder>> DiscoveryResponder::start(
    lws_context* ctx, lws_vhost* watch_vhost, DiscoveryResponderOptions options,
    DiscoverySelfProvider self) {
  TETHER_ASSIGN_OR_RETURN(std::uint32_t address, parse_ipv4(options.address));
  std::unique_ptr<DiscoveryResponder> r(
      new DiscoveryResponder(ctx, std::move(options), std::move(self)));
  r->fd_.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!r->fd_) return make_error(Errc::kIo, std::string("socket: ") + std::strerror(errno));
  const int on = 1;
  // No SO_REUSEADDR: on Linux it would let a second UDP socket share the port (and take
  // the probes); a restarted agent does not need it for UDP.
  // Which interface (and so which MAC) a probe came in on.
  if (::setsockopt(r->fd_.get(), IPPROTO_IP, IP_PKTINFO, &on, sizeof on) != 0) {
    return make_error(Errc::kIo, std::string("IP_PKTINFO: ") + std::strerror(errno));
  }
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(r->options_.port);
  sin.sin_addr.s_addr = htonl(address);
  if (::bind(r->fd_.get(), reinterpret_cast<const sockaddr*>(&sin), sizeof sin) != 0) {
    return make_error(Errc::kUnavailable, "cannot bind UDP " + r->options_.address + ":" +
                                              std::to_string(r->options_.port) + ": " +
                                              std::strerror(errno));
  }
  DiscoveryResponder* raw = r.get();
  TETHER_ASSIGN_OR_RETURN(
      r->watcher_, LwsFdWatcher::watch(watch_vhost, r->fd_.get(), [raw] { raw->on_readable(); }));
  r->write_stats();
  return r;
}

const std::vector<LocalInterface>& DiscoveryResponder::interfaces() {
  const double now = monotonic_seconds();
  if (now - interfaces_read_at_ >= 2.0) {
    auto read = read_local_interfaces();
    if (read.ok()) interfaces_ = std::move(read).value();
    interfaces_read_at_ = now;
  }
  return interfaces_;
}

void DiscoveryResponder::on_readable() {
  // Bounded work per wakeup: the loop has other things to do during a flood.
  for (int i = 0; i < 64; ++i) {
    std::uint8_t buf[protocol::kMaxDatagramSize + 1];
    sockaddr_in from{};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(in_pktinfo))];
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_TRUNC);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        log::debug(std::string("discovery: recvmsg: ") + std::strerror(errno));
      }
      return;
    }
    unsigned ifindex = 0;
    std::uint32_t local = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
        in_pktinfo info{};
        std::memcpy(&info, CMSG_DATA(c), sizeof info);
        ifindex = static_cast<unsigned>(info.ipi_ifindex);
        local = ntohl(info.ipi_spec_dst.s_addr);
      }
    }
    ++counters_.received;
    const std::uint32_t source = ntohl(from.sin_addr.s_addr);
    const std::uint16_t source_port = ntohs(from.sin_port);
    if ((msg.msg_flags & MSG_TRUNC) != 0 ||
        static_cast<std::size_t>(n) > protocol::kMaxDatagramSize) {
      drop(DropReason::kMalformed, source, source_port);
      continue;
    }
    handle(std::span<const std::uint8_t>(buf, static_cast<std::size_t>(n)), source, source_port,
           ifindex, local);
  }
}

void DiscoveryResponder::drop(DropReason reason, std::uint32_t source, std::uint16_t source_port) {
  counters_.count(reason);
  if (log::level() >= log::Level::kDebug) {
    log::debug("discovery: dropped a datagram from " + ipv4_to_string(source) + ":" +
               std::to_string(source_port) + " (" + std::string(drop_reason_name(reason)) + ")");
  }
  stats_changed();
}

void DiscoveryResponder::handle(std::span<const std::uint8_t> data, std::uint32_t source,
                                std::uint16_t source_port, unsigned ifindex, std::uint32_t local) {
  const auto& ifs = interfaces();
  std::vector<Ipv4Net> subnets;
  for (const auto& i : ifs) subnets.insert(subnets.end(), i.subnets.begin(), i.subnets.end());
  if (auto why = policy_.check_source(source, subnets)) return drop(*why, source, source_port);

  auto decoded = protocol::decode_datagram(data);
  if (!decoded.ok()) return drop(DropReason::kMalformed, source, source_port);

  std::uint16_t reply_port = 0;
  if (const auto* scan = std::get_if<protocol::ScanProbe>(&*decoded)) {
    reply_port = scan->reply_port;
  } else if (const auto* online = std::get_if<protocol::OnlineProbe>(&*decoded)) {
    reply_port = online->reply_port;
  } else {
    // Replies, and registration requests (taken over TCP only: the device then connects
    // out to the named server, which a spoofed UDP datagram must not be able to cause).
    return drop(DropReason::kNotAProbe, source, source_port);
  }
  if (auto why = policy_.check_reply_port(reply_port)) return drop(*why, source, source_port);
  const double now = monotonic_seconds();
  if (auto why = policy_.take_rate(source, now)) return drop(*why, source, source_port);

  const DiscoverySelf self = self_();
  Result<std::vector<std::uint8_t>> reply = make_error(Errc::kInternal, "no reply");
  bool online_reply = false;
  if (const auto* scan = std::get_if<protocol::ScanProbe>(&*decoded)) {
    protocol::MacAddress::Bytes mac{};
    for (const auto& i : ifs) {
      if (i.index == ifindex && i.mac) mac = *i.mac;
    }
    reply = build_scan_reply(*scan, data.size(), self, mac);
  } else {
    const auto& online = std::get<protocol::OnlineProbe>(*decoded);
    if (auto why = policy_.check_online_probe(online, self.online, std::time(nullptr), now)) {
      return drop(*why, source, source_port);
    }
    reply = build_online_reply(online, data.size(), self.online);
    online_reply = true;
  }
  if (!reply.ok()) return drop(DropReason::kReplyTooLarge, source, source_port);

  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(reply_port);
  to.sin_addr.s_addr = htonl(source);
  // From the local address the probe reached (for a broadcast probe, the receiving
  // interface's), so that a prober matching replies to addresses sees the one it asked.
  iovec iov{reply->data(), reply->size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(in_pktinfo))] = {};
  msghdr msg{};
  msg.msg_name = &to;
  msg.msg_namelen = sizeof to;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (local != 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
    in_pktinfo info{};
    info.ipi_spec_dst.s_addr = htonl(local);
    std::memcpy(CMSG_DATA(c), &info, sizeof info);
  }
  if (::sendmsg(fd_.get(), &msg, MSG_DONTWAIT) < 0) {
    return drop(DropReason::kSendFailed, source, source_port);
  }
  if (online_reply) {
    ++counters_.online_replies;
  } else {
    ++counters_.scan_replies;
  }
  if (log::level() >= log::Level::kDebug) {
    log::debug("discovery: answered a " + std::string(online_reply ? "online" : "scan") +
               " probe from " + ipv4_to_string(source) + ":" + std::to_string(source_port) +
               " on port " + std::to_string(reply_port) + " (" + std::to_string(reply->size()) +
               " <= " + std::to_string(data.size()) + " bytes)");
  }
  stats_changed();
}

void DiscoveryResponder::count_register_request() {
  ++counters_.register_requests;
  stats_changed();
}

Result<std::vector<std::uint8_t>> DiscoveryResponder::answer_tcp_scan(
    const protocol::ScanProbe& probe, std::size_t probe_size, std::uint32_t local_ip) {
  protocol::MacAddress::Bytes mac{};
  for (const auto& i : interfaces()) {
    if (i.mac && std::find(i.addresses.begin(), i.addresses.end(), local_ip) != i.addresses.end()) {
      mac = *i.mac;
    }
  }
  auto reply = build_scan_reply(probe, probe_size, self_(), mac);
  if (reply.ok()) {
    ++counters_.scan_replies;
  } else {
    counters_.count(DropReason::kReplyTooLarge);
  }
  stats_changed();
  return reply;
}

void DiscoveryResponder::stats_changed() {
  // Written at most four times a second: a flood must not become a flood of file writes.
  if (!options_.stats_path.empty() && !stats_timer_.pending()) {
    stats_timer_.schedule(std::chrono::milliseconds(250));
  }
}

void DiscoveryResponder::write_stats() {
  if (options_.stats_path.empty()) return;
  nlohmann::json dropped = nlohmann::json::object();
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < kDropReasonCount; ++i) {
    dropped[std::string(drop_reason_name(static_cast<DropReason>(i)))] = counters_.dropped[i];
    total += counters_.dropped[i];
  }
  const nlohmann::json doc = {
      {"address", options_.address},
      {"port", options_.port},
      {"received", counters_.received},
      {"replies", {{"scan", counters_.scan_replies}, {"online", counters_.online_replies}}},
      {"register_requests", counters_.register_requests},
      {"dropped_total", total},
      {"dropped", dropped},
      {"updated_at", static_cast<std::int64_t>(std::time(nullptr))}};
  // No fsync: counters only describe the moment, and waiting for the disk four times a
  // second during a flood stalled the loop long enough for the socket to overflow.
  auto written = write_file_replace(options_.stats_path, doc.dump(2) + "\n", 0644);
  if (!written.ok()) log::debug("discovery: " + written.error().message);
}

}  // namespace tether::agent
