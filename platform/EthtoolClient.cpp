#include "platform/EthtoolClient.h"

#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

namespace tether::platform {
namespace {

struct WolLetter {
  char letter;
  std::uint32_t bit;
};

// ethtool's order, so our strings read the same as `ethtool eth0` prints them.
constexpr std::array<WolLetter, 8> kWolLetters{{
    {'p', WAKE_PHY},
    {'u', WAKE_UCAST},
    {'m', WAKE_MCAST},
    {'b', WAKE_BCAST},
    {'a', WAKE_ARP},
    {'g', WAKE_MAGIC},
    {'s', WAKE_MAGICSECURE},
    {'f', WAKE_FILTER},
}};

Status check_ifname(const std::string& ifname) {
  // The kernel copies IFNAMSIZ bytes including the terminator; a longer name would be cut
  // and could silently name a different interface.
  if (ifname.empty() || ifname.size() >= IFNAMSIZ ||
      ifname.find_first_of("/ \t\n") != std::string::npos || ifname == "." || ifname == "..") {
    return make_error(Errc::kInvalidArgument, "invalid interface name \"" + ifname + "\"");
  }
  return {};
}

// Issues one SIOCETHTOOL request; returns 0 or the errno.
int ethtool_ioctl(int fd, const std::string& ifname, void* data) {
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
  ifr.ifr_data = static_cast<char*>(data);
  if (::ioctl(fd, SIOCETHTOOL, &ifr) != 0) return errno;
  return 0;
}

Error ioctl_error(const std::string& what, const std::string& ifname, int err) {
  Errc code = Errc::kIo;
  if (err == ENODEV) code = Errc::kNotFound;
  if (err == EPERM || err == EACCES) code = Errc::kPermissionDenied;
  if (err == EOPNOTSUPP) code = Errc::kUnavailable;
  if (err == ENODEV) return make_error(code, "no network interface " + ifname);
  return make_error(code, what + " " + ifname + ": " + std::strerror(err));
}

}  // namespace

std::string wake_on_lan_letters(std::uint32_t wolopts) {
  std::string out;
  for (const auto& l : kWolLetters) {
    if ((wolopts & l.bit) != 0) out.push_back(l.letter);
  }
  return out;
}

Result<std::uint32_t> wake_on_lan_mask(std::string_view letters) {
  if (letters.empty()) {
    return make_error(Errc::kInvalidArgument,
                      "no wake-on-LAN modes given (use d to turn wake-on-LAN off)");
  }
  if (letters == "d") return std::uint32_t{0};
  std::uint32_t mask = 0;
  for (char c : letters) {
    if (c == 'd') {
      return make_error(Errc::kInvalidArgument,
                        "wake-on-LAN mode d (disabled) cannot be combined with other modes");
    }
    bool known = false;
    for (const auto& l : kWolLetters) {
      if (l.letter == c) {
        mask |= l.bit;
        known = true;
      }
    }
    if (!known) {
      return make_error(Errc::kInvalidArgument, "unknown wake-on-LAN mode '" + std::string(1, c) +
                                                    "' (modes are pumbagsf, or d)");
    }
  }
  return mask;
}

Result<EthtoolClient> EthtoolClient::open() {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return make_error(Errc::kIo,
                      std::string("cannot open a socket for ethtool: ") + std::strerror(errno));
  }
  return EthtoolClient(std::move(fd));
}

Result<WakeOnLanModes> EthtoolClient::wake_on_lan(const std::string& ifname) const {
  TETHER_TRY(check_ifname(ifname));
  ethtool_wolinfo wol{};
  wol.cmd = ETHTOOL_GWOL;
  if (const int err = ethtool_ioctl(fd_.get(), ifname, &wol); err != 0) {
    // Drivers without get_wol (virtual NICs) answer EOPNOTSUPP: "no wake-on-LAN", not a fault.
    if (err == EOPNOTSUPP) return WakeOnLanModes{};
    return ioctl_error("cannot read wake-on-LAN settings of", ifname, err);
  }
  WakeOnLanModes modes;
  modes.supported = wake_on_lan_letters(wol.supported);
  if (!modes.supported.empty()) {
    modes.enabled = wol.wolopts == 0 ? "d" : wake_on_lan_letters(wol.wolopts);
  }
  return modes;
}

Status EthtoolClient::set_wake_on_lan(const std::string& ifname, std::string_view modes) const {
  TETHER_TRY(check_ifname(ifname));
  TETHER_ASSIGN_OR_RETURN(const std::uint32_t mask, wake_on_lan_mask(modes));
  ethtool_wolinfo current{};
  current.cmd = ETHTOOL_GWOL;
  if (const int err = ethtool_ioctl(fd_.get(), ifname, &current); err != 0) {
    if (err == EOPNOTSUPP) {
      return make_error(Errc::kUnavailable, ifname + " does not support wake-on-LAN");
    }
    return ioctl_error("cannot read wake-on-LAN settings of", ifname, err);
  }
  if (const std::uint32_t missing = mask & ~current.supported; missing != 0) {
    const std::string letters = wake_on_lan_letters(missing);
    if (current.supported == 0) {
      return make_error(Errc::kUnavailable, ifname + " does not support wake-on-LAN");
    }
    return make_error(Errc::kUnavailable, ifname + " does not support wake-on-LAN mode" +
                                              (letters.size() > 1 ? "s " : " ") + letters +
                                              " (it supports " +
                                              wake_on_lan_letters(current.supported) + ")");
  }
  if (current.wolopts == mask) return {};
  ethtool_wolinfo wanted{};
  wanted.cmd = ETHTOOL_SWOL;
  wanted.wolopts = mask;
  // Keep the SecureOn password the driver already has, as ethtool does.
  std::memcpy(wanted.sopass, current.sopass, sizeof wanted.sopass);
  if (const int err = ethtool_ioctl(fd_.get(), ifname, &wanted); err != 0) {
    return ioctl_error("cannot set wake-on-LAN on", ifname, err);
  }
  return {};
}

Result<std::string> EthtoolClient::driver_name(const std::string& ifname) const {
  TETHER_TRY(check_ifname(ifname));
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  if (const int err = ethtool_ioctl(fd_.get(), ifname, &info); err != 0) {
    return ioctl_error("cannot read the driver of", ifname, err);
  }
  return std::string(info.driver, ::strnlen(info.driver, sizeof info.driver));
}

Status set_wake_on_lan(const std::string& ifname, std::string_view modes) {
  TETHER_ASSIGN_OR_RETURN(const EthtoolClient client, EthtoolClient::open());
  return client.set_wake_on_lan(ifname, modes);
}

}  // namespace tether::platform
