#include "agent/SystemInfo.h"

#include <dirent.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "common/FileIo.h"
#include "protocol/MacAddress.h"

namespace tether::agent {
namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

std::string os_release_value(const std::string& content, const std::string& key) {
  std::istringstream in(content);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + "=", 0) != 0) continue;
    std::string v = line.substr(key.size() + 1);
    if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) {
      v = v.substr(1, v.size() - 2);
    }
    return v;
  }
  return {};
}

std::string clip(std::string s, std::size_t max) {
  if (s.size() > max) s.resize(max);
  for (auto& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return s;
}

}  // namespace

protocol::OsInfo read_os_info() {
  protocol::OsInfo os;
  auto release = read_file("/etc/os-release", 64 * 1024);
  if (!release.ok()) release = read_file("/usr/lib/os-release", 64 * 1024);
  if (release.ok()) {
    os.name = clip(os_release_value(*release, "NAME"), 128);
    os.version = clip(os_release_value(*release, "VERSION_ID"), 64);
  }
  utsname u{};
  if (::uname(&u) == 0) {
    os.kernel = clip(u.release, 128);
    os.arch = clip(u.machine, 32);
  }
  return os;
}

std::string read_hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return clip(buf, 253);
}

protocol::StatusReport read_status_report(int shadow_sessions) {
  protocol::StatusReport s;
  if (auto up = read_file("/proc/uptime", 4096); up.ok()) {
    s.uptime_s = static_cast<std::int64_t>(std::strtod(up->c_str(), nullptr));
  }
  if (auto load = read_file("/proc/loadavg", 4096); load.ok()) {
    s.load1 = std::max(0.0, std::strtod(load->c_str(), nullptr));
  }
  if (auto mem = read_file("/proc/meminfo", 64 * 1024); mem.ok()) {
    std::istringstream in(*mem);
    std::string key;
    std::int64_t value = 0;
    std::string unit;
    while (in >> key >> value) {
      std::getline(in, unit);
      if (key == "MemTotal:") s.mem_total_kb = value;
      if (key == "MemAvailable:") s.mem_available_kb = value;
    }
  }
  s.shadow_sessions = shadow_sessions;
  return s;
}

std::vector<std::string> read_macs() {
  std::vector<std::string> out;
  DIR* d = ::opendir("/sys/class/net");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == ".." || name == "lo") continue;
    auto addr = read_file("/sys/class/net/" + name + "/address", 4096);  // sysfs: st_size 4096
    if (!addr.ok()) continue;
    auto mac = protocol::MacAddress::parse(trim(*addr));
    if (mac.ok()) out.push_back(mac->to_string());
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace tether::agent
