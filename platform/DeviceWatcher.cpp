#include "platform/DeviceWatcher.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <string_view>

namespace tether::platform {
namespace {

constexpr std::array<const char*, 4> kSubsystems = {"net", "block", "usb", "drm"};
// Netlink datagrams are at most a page or two; dumps are sized from the receive buffer.
constexpr std::size_t kBufferBytes = 64 * 1024;
// Socket buffers large enough for a burst (a dock with a dozen devices, a VPN coming up).
constexpr int kReceiveBuffer = 1024 * 1024;
// The state kept to tell news from repeats is bounded; past this, changes are reported
// without being remembered (a spurious report, never a missed one).
constexpr std::size_t kMaxTracked = 16384;
// A dump of the current state at open or after an overrun: at most this many messages.
constexpr std::size_t kMaxDumpMessages = 200000;

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

// The attributes of one rtnetlink message: payload by type (the first occurrence).
using Attributes = std::map<unsigned short, std::string_view>;

Attributes parse_attributes(std::string_view payload) {
  Attributes out;
  while (payload.size() >= sizeof(rtattr)) {
    rtattr a{};
    std::memcpy(&a, payload.data(), sizeof a);
    if (a.rta_len < sizeof(rtattr) || a.rta_len > payload.size()) break;
    out.emplace(static_cast<unsigned short>(a.rta_type & NLA_TYPE_MASK),
                payload.substr(RTA_LENGTH(0), a.rta_len - RTA_LENGTH(0)));
    payload.remove_prefix(std::min<std::size_t>(RTA_ALIGN(a.rta_len), payload.size()));
  }
  return out;
}

template <typename T>
std::optional<T> attribute_as(const Attributes& attrs, unsigned short type) {
  auto it = attrs.find(type);
  if (it == attrs.end() || it->second.size() < sizeof(T)) return std::nullopt;
  T value{};
  std::memcpy(&value, it->second.data(), sizeof value);
  return value;
}

std::string attribute_bytes(const Attributes& attrs, unsigned short type) {
  auto it = attrs.find(type);
  return it == attrs.end() ? std::string() : std::string(it->second.substr(0, 256));
}

void append(std::string& key, std::int64_t v) {
  key += std::to_string(v);
  key += '|';
}

}  // namespace

namespace detail {

struct NetState {
  struct Link {
    bool up = false;
    bool lower_up = false;
    std::string name;
    std::string address;
  };
  struct Address {
    int ifindex = 0;
    bool tentative = false;
  };
  std::map<int, Link> links;
  std::map<std::string, Address> addresses;   // key: family|ifindex|prefix|bytes
  std::map<std::string, int> default_routes;  // key: family|table|type|metric|oif|gateway…; oif

  void clear() {
    links.clear();
    addresses.clear();
    default_routes.clear();
  }

  // Updates the state from one message and says what it changed.
  DeviceChanges apply(std::uint16_t type, std::string_view payload) {
    switch (type) {
      case RTM_NEWLINK:
      case RTM_DELLINK: return apply_link(type, payload);
      case RTM_NEWADDR:
      case RTM_DELADDR: return apply_address(type, payload);
      case RTM_NEWROUTE:
      case RTM_DELROUTE: return apply_route(type, payload);
      default: return {};
    }
  }

  DeviceChanges apply_link(std::uint16_t type, std::string_view payload) {
    if (payload.size() < NLMSG_ALIGN(sizeof(ifinfomsg))) return {};
    ifinfomsg info{};
    std::memcpy(&info, payload.data(), sizeof info);
    const DeviceChanges both{true, true};
    if (type == RTM_DELLINK) {
      links.erase(info.ifi_index);
      // The kernel does not always announce the routes that go with a link; forget them.
      std::erase_if(default_routes, [&](const auto& r) { return r.second == info.ifi_index; });
      std::erase_if(addresses, [&](const auto& a) { return a.second.ifindex == info.ifi_index; });
      return both;
    }
    const Attributes attrs = parse_attributes(payload.substr(NLMSG_ALIGN(sizeof(ifinfomsg))));
    Link now;
    now.up = (info.ifi_flags & IFF_UP) != 0;
    now.lower_up = (info.ifi_flags & IFF_LOWER_UP) != 0;
    now.name = attribute_bytes(attrs, IFLA_IFNAME);
    now.address = attribute_bytes(attrs, IFLA_ADDRESS);
    auto it = links.find(info.ifi_index);
    if (it == links.end()) {
      if (links.size() < kMaxTracked) links.emplace(info.ifi_index, std::move(now));
      return both;
    }
    Link& was = it->second;
    DeviceChanges changes;
    // Most RTM_NEWLINK messages repeat the state (wireless events, statistics, MTU, queue
    // changes); only up/down is news for the network, and name/MAC for the inventory.
    if (now.up != was.up || now.lower_up != was.lower_up) changes = both;
    if (now.name != was.name || (!now.address.empty() && now.address != was.address)) {
      changes.inventory = true;
    }
    if (now.address.empty()) now.address = was.address;
    was = std::move(now);
    return changes;
  }

  DeviceChanges apply_address(std::uint16_t type, std::string_view payload) {
    if (payload.size() < NLMSG_ALIGN(sizeof(ifaddrmsg))) return {};
    ifaddrmsg info{};
    std::memcpy(&info, payload.data(), sizeof info);
    const Attributes attrs = parse_attributes(payload.substr(NLMSG_ALIGN(sizeof(ifaddrmsg))));
    // IFA_LOCAL is the interface's own address on point-to-point links, where IFA_ADDRESS
    // is the peer's.
    std::string bytes = attribute_bytes(attrs, IFA_LOCAL);
    if (bytes.empty()) bytes = attribute_bytes(attrs, IFA_ADDRESS);
    std::string key;
    append(key, info.ifa_family);
    append(key, static_cast<std::int64_t>(info.ifa_index));
    append(key, info.ifa_prefixlen);
    key += bytes;
    const DeviceChanges both{true, true};
    if (type == RTM_DELADDR) {
      addresses.erase(key);
      return both;
    }
    const std::uint32_t flags =
        attribute_as<std::uint32_t>(attrs, IFA_FLAGS).value_or(info.ifa_flags);
    const Address now{static_cast<int>(info.ifa_index), (flags & IFA_F_TENTATIVE) != 0};
    auto it = addresses.find(key);
    if (it == addresses.end()) {
      if (addresses.size() < kMaxTracked) addresses.emplace(std::move(key), now);
      return both;
    }
    // IPv6 addresses are re-announced whenever a router advertisement refreshes their
    // lifetimes: no news. An address that finished duplicate address detection is usable
    // now: news.
    const bool changed = it->second.tentative != now.tentative;
    it->second = now;
    return changed ? both : DeviceChanges{};
  }

  DeviceChanges apply_route(std::uint16_t type, std::string_view payload) {
    if (payload.size() < NLMSG_ALIGN(sizeof(rtmsg))) return {};
    rtmsg info{};
    std::memcpy(&info, payload.data(), sizeof info);
    if (info.rtm_dst_len != 0 || (info.rtm_flags & RTM_F_CLONED) != 0) return {};
    if (info.rtm_family != AF_INET && info.rtm_family != AF_INET6) return {};
    const Attributes attrs = parse_attributes(payload.substr(NLMSG_ALIGN(sizeof(rtmsg))));
    const std::uint32_t table =
        attribute_as<std::uint32_t>(attrs, RTA_TABLE).value_or(info.rtm_table);
    if (table == RT_TABLE_LOCAL) return {};
    const int oif = attribute_as<int>(attrs, RTA_OIF).value_or(0);
    std::string key;
    append(key, info.rtm_family);
    append(key, table);
    append(key, info.rtm_type);
    append(key, attribute_as<std::uint32_t>(attrs, RTA_PRIORITY).value_or(0));
    append(key, oif);
    key += attribute_bytes(attrs, RTA_GATEWAY);
    key += '|';
    key += attribute_bytes(attrs, RTA_MULTIPATH);
    const DeviceChanges network{false, true};
    if (type == RTM_DELROUTE) {
      default_routes.erase(key);
      return network;
    }
    // IPv6 default routes learnt from router advertisements are re-announced on every
    // advertisement; the same route again is no news.
    if (default_routes.contains(key)) return {};
    if (default_routes.size() < kMaxTracked) default_routes.emplace(std::move(key), oif);
    return network;
  }
};

}  // namespace detail

namespace {

using detail::NetState;

// Walks the netlink messages of one datagram. Returns false at NLMSG_DONE or NLMSG_ERROR (the
// end of a dump), true otherwise.
template <typename Fn>
bool for_each_message(std::string_view data, Fn&& fn) {
  while (data.size() >= sizeof(nlmsghdr)) {
    nlmsghdr h{};
    std::memcpy(&h, data.data(), sizeof h);
    if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > data.size()) return true;
    if (h.nlmsg_type == NLMSG_DONE || h.nlmsg_type == NLMSG_ERROR) return false;
    fn(h.nlmsg_type, data.substr(NLMSG_HDRLEN, h.nlmsg_len - NLMSG_HDRLEN));
    data.remove_prefix(std::min<std::size_t>(NLMSG_ALIGN(h.nlmsg_len), data.size()));
  }
  return true;
}

// Receives one datagram into `buffer`; the sender's port id goes to `sender`.
ssize_t receive(int fd, std::vector<char>& buffer, int flags, std::uint32_t& sender,
                bool& truncated) {
  sockaddr_nl from{};
  iovec iov{buffer.data(), buffer.size()};
  msghdr msg{};
  msg.msg_name = &from;
  msg.msg_namelen = sizeof from;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  const ssize_t n = ::recvmsg(fd, &msg, flags);
  sender = from.nl_pid;
  truncated = (msg.msg_flags & MSG_TRUNC) != 0;
  return n;
}

// Dumps one kind of rtnetlink object (links, addresses, routes) into `state`.
Status dump(int fd, std::uint16_t type, std::size_t header_size, NetState& state,
            std::vector<char>& buffer) {
  struct Request {
    nlmsghdr header;
    std::array<char, 64> body;  // an all-zero ifinfomsg/ifaddrmsg/rtmsg: family AF_UNSPEC
  } request{};
  request.header.nlmsg_len = NLMSG_LENGTH(header_size);
  request.header.nlmsg_type = type;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.header.nlmsg_seq = type;
  if (::send(fd, &request, request.header.nlmsg_len, 0) < 0) {
    return make_error(Errc::kIo, errno_text("rtnetlink dump request"));
  }
  std::size_t messages = 0;
  while (messages < kMaxDumpMessages) {
    std::uint32_t sender = 0;
    bool truncated = false;
    const ssize_t n = receive(fd, buffer, 0, sender, truncated);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(Errc::kIo, errno_text("rtnetlink dump"));
    }
    if (n == 0) break;
    if (sender != 0) continue;
    const bool more = for_each_message(std::string_view(buffer.data(), static_cast<std::size_t>(n)),
                                       [&](std::uint16_t t, std::string_view payload) {
                                         ++messages;
                                         (void)state.apply(t, payload);
                                       });
    if (!more) return {};
  }
  return make_error(Errc::kTooLarge, "rtnetlink dump did not end");
}

}  // namespace

DeviceWatcher::DeviceWatcher() : state_(std::make_unique<NetState>()), buffer_(kBufferBytes) {}
DeviceWatcher::DeviceWatcher(DeviceWatcher&&) noexcept = default;
DeviceWatcher& DeviceWatcher::operator=(DeviceWatcher&&) noexcept = default;
DeviceWatcher::~DeviceWatcher() = default;

Result<DeviceWatcher> DeviceWatcher::open(const DeviceWatcherOptions& options) {
  DeviceWatcher w;
  std::string failures;
  if (options.udev) {
    if (auto st = w.open_udev(); !st.ok()) {
      w.warnings_.push_back("device events (udev monitor) unavailable: " + st.error().message);
      failures += st.error().message;
    }
  }
  if (options.rtnetlink) {
    if (auto st = w.open_rtnetlink(); !st.ok()) {
      w.warnings_.push_back("network events (rtnetlink) unavailable: " + st.error().message);
      failures += (failures.empty() ? "" : "; ") + st.error().message;
    }
  }
  if (!w.monitor_ && !w.rtnl_) {
    return make_error(
        Errc::kUnavailable,
        "cannot watch devices or the network" +
            (failures.empty() ? std::string(": no source asked for") : ": " + failures));
  }
  return w;
}

Status DeviceWatcher::open_udev() {
  udev_.reset(udev_new());
  if (!udev_) return make_error(Errc::kUnavailable, errno_text("cannot start libudev"));
  // "kernel": the kernel's own uevents. "udev" would need udevd to re-broadcast them.
  monitor_.reset(udev_monitor_new_from_netlink(udev_.get(), "kernel"));
  if (!monitor_) {
    return make_error(Errc::kUnavailable, errno_text("cannot open the kernel uevent socket"));
  }
  for (const char* subsystem : kSubsystems) {
    if (udev_monitor_filter_add_match_subsystem_devtype(monitor_.get(), subsystem, nullptr) < 0) {
      monitor_.reset();
      return make_error(Errc::kInternal, "cannot filter uevents to " + std::string(subsystem));
    }
  }
  // Best effort: a larger buffer rides out bursts; the default still works.
  (void)udev_monitor_set_receive_buffer_size(monitor_.get(), kReceiveBuffer);
  if (const int r = udev_monitor_enable_receiving(monitor_.get()); r < 0) {
    monitor_.reset();
    return make_error(Errc::kUnavailable,
                      std::string("cannot receive uevents: ") + std::strerror(-r));
  }
  // libudev's socket is non-blocking already; process() must never block, so make sure.
  const int fd = udev_monitor_get_fd(monitor_.get());
  if (const int fl = ::fcntl(fd, F_GETFL); fl >= 0 && (fl & O_NONBLOCK) == 0) {
    (void)::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  }
  return {};
}

Status DeviceWatcher::open_rtnetlink() {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE));
  if (!fd) return make_error(Errc::kUnavailable, errno_text("cannot open an rtnetlink socket"));
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups =
      RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return make_error(Errc::kUnavailable, errno_text("cannot subscribe to rtnetlink groups"));
  }
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &kReceiveBuffer, sizeof kReceiveBuffer);
  rtnl_ = std::move(fd);
  // Learn the current links, addresses and routes, so that the first repeat of each (an RA
  // refreshing a route, a wireless event on a link) is not taken for news.
  if (auto st = resync(); !st.ok()) {
    warnings_.push_back("cannot read the current network state (" + st.error().message +
                        "): the first message about each link, address or route counts as a "
                        "change");
  }
  return {};
}

Status DeviceWatcher::resync() {
  state_->clear();
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd) return make_error(Errc::kIo, errno_text("rtnetlink socket"));
  // The dump is answered at once; the timeout only guards against a kernel that never does.
  timeval timeout{2, 0};
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  TETHER_TRY(dump(fd.get(), RTM_GETLINK, sizeof(ifinfomsg), *state_, buffer_));
  TETHER_TRY(dump(fd.get(), RTM_GETADDR, sizeof(ifaddrmsg), *state_, buffer_));
  TETHER_TRY(dump(fd.get(), RTM_GETROUTE, sizeof(rtmsg), *state_, buffer_));
  return {};
}

int DeviceWatcher::udev_fd() const noexcept {
  return monitor_ ? udev_monitor_get_fd(monitor_.get()) : -1;
}

std::vector<int> DeviceWatcher::fds() const {
  std::vector<int> out;
  if (monitor_) out.push_back(udev_fd());
  if (rtnl_) out.push_back(rtnl_.get());
  return out;
}

DeviceChanges DeviceWatcher::process(int fd) {
  if (fd < 0) return {};
  if (monitor_ && fd == udev_fd()) return process_udev();
  if (rtnl_ && fd == rtnl_.get()) return process_rtnetlink();
  return {};
}

DeviceChanges DeviceWatcher::process_udev() {
  DeviceChanges changes;
  for (int i = 0; i < kMaxMessagesPerCall; ++i) {
    errno = 0;
    // Returns at once when nothing is waiting; devices outside our subsystems are skipped
    // inside libudev.
    const UdevDevicePtr device(udev_monitor_receive_device(monitor_.get()));
    if (device) {
      changes.inventory = true;
      continue;
    }
    if (errno == ENOBUFS) {  // events were lost: whatever they said, the inventory may differ
      changes.inventory = true;
      continue;
    }
    break;
  }
  return changes;
}

DeviceChanges DeviceWatcher::process_rtnetlink() {
  DeviceChanges changes;
  for (int i = 0; i < kMaxMessagesPerCall; ++i) {
    std::uint32_t sender = 0;
    bool truncated = false;
    const ssize_t n = receive(rtnl_.get(), buffer_, MSG_DONTWAIT, sender, truncated);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        // Messages were dropped: report everything and learn the state afresh, so that what
        // follows is judged against the truth.
        changes = DeviceChanges{true, true};
        (void)resync();
        continue;
      }
      break;  // EAGAIN: drained
    }
    if (n == 0) break;
    if (sender != 0) continue;  // only the kernel speaks on these groups
    if (truncated) changes = DeviceChanges{true, true};
    (void)for_each_message(std::string_view(buffer_.data(), static_cast<std::size_t>(n)),
                           [&](std::uint16_t type, std::string_view payload) {
                             changes |= state_->apply(type, payload);
                           });
  }
  return changes;
}

}  // namespace tether::platform
