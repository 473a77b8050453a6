#include "platform/InventoryCollector.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <tuple>

#include "common/UniqueFd.h"
#include "platform/InventorySanitizer.h"
#include "platform/KernelNicQueries.h"
#include "protocol/MacAddress.h"

namespace tether::platform {

struct InventoryCollector::Device {
  std::string name;  // the sysfs name: "eth0", "sda", "1-2", "card0-HDMI-A-1"
  std::string path;  // its sysfs directory
  // udev database properties, present only when udevd has run (hardware database names)
  std::map<std::string, std::string> properties;
};

namespace {

using L = InventoryLimits;
using protocol::Inventory;

// Sysfs attributes are one line; reading a bounded prefix keeps a bogus or hostile file (a
// fake tree, a buggy driver) from costing more than this.
constexpr std::size_t kAttrMax = 4096;
constexpr std::size_t kModesMax = 64 * 1024;
constexpr std::size_t kProcMax = 1024 * 1024;
// A directory with more entries than this is not a real device list.
constexpr std::size_t kMaxDirEntries = 16384;

const std::array<const char*, 3> kUdevProperties = {"ID_MODEL", "ID_MODEL_FROM_DATABASE",
                                                    "ID_VENDOR_FROM_DATABASE"};

// Reads at most `max` bytes of a file. sysfs and /proc files report size 0, so this reads
// until EOF rather than trusting the size.
Result<std::string> read_attr(const std::string& path, std::size_t max = kAttrMax) {
  // O_NONBLOCK: a FIFO in a (fake) tree must not hang the collection; it is refused below.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    const int err = errno;
    return make_error(err == ENOENT ? Errc::kNotFound : Errc::kIo,
                      "cannot read " + path + ": " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return make_error(Errc::kBadValue, "cannot read " + path + ": not a regular file");
  }
  std::string out(std::min<std::size_t>(max, 4096), '\0');
  std::size_t done = 0;
  while (done < max) {
    if (done == out.size()) out.resize(std::min(max, out.size() * 2));
    const ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      return make_error(Errc::kIo, "cannot read " + path + ": " + std::strerror(err));
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  out.resize(done);
  return out;
}

std::string trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

// The attribute's first line, trimmed; nullopt when it cannot be read.
std::optional<std::string> read_line(const std::string& path) {
  auto content = read_attr(path);
  if (!content.ok()) return std::nullopt;
  const std::string& c = *content;
  return trim(std::string_view(c).substr(0, c.find('\n')));
}

template <typename T>
std::optional<T> parse_int(std::string_view s) {
  T value{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Entry names of a directory (not "." and ".."), sorted.
Result<std::vector<std::string>> list_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    const int err = errno;
    return make_error(err == ENOENT ? Errc::kNotFound : Errc::kIo,
                      "cannot list " + dir + ": " + std::strerror(err));
  }
  const std::unique_ptr<DIR, int (*)(DIR*)> closer(d, ::closedir);
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    const std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    if (names.size() == kMaxDirEntries) break;
    names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The last component of a symlink's target ("../../bus/pci/drivers/e1000e" -> "e1000e").
std::string link_basename(const std::string& path) {
  std::array<char, PATH_MAX> buf{};
  const ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size() - 1);
  if (n <= 0) return {};
  const std::string_view target(buf.data(), static_cast<std::size_t>(n));
  const auto slash = target.rfind('/');
  return std::string(slash == std::string_view::npos ? target : target.substr(slash + 1));
}

// Text order, except that runs of digits compare as numbers, so that "1-2" < "1-10" and
// "HDMI-A-2" < "HDMI-A-10", as a person would list them.
bool natural_less(std::string_view a, std::string_view b) {
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  std::size_t i = 0;
  std::size_t j = 0;
  while (i < a.size() && j < b.size()) {
    if (digit(a[i]) && digit(b[j])) {
      std::size_t ei = i;
      std::size_t ej = j;
      while (ei < a.size() && digit(a[ei])) ++ei;
      while (ej < b.size() && digit(b[ej])) ++ej;
      std::string_view na = a.substr(i, ei - i);
      std::string_view nb = b.substr(j, ej - j);
      while (na.size() > 1 && na.front() == '0') na.remove_prefix(1);
      while (nb.size() > 1 && nb.front() == '0') nb.remove_prefix(1);
      if (na.size() != nb.size()) return na.size() < nb.size();
      if (na != nb) return na < nb;
      i = ei;
      j = ej;
      continue;
    }
    if (a[i] != b[j]) return a[i] < b[j];
    ++i;
    ++j;
  }
  if ((a.size() - i) != (b.size() - j)) return (a.size() - i) < (b.size() - j);
  return a < b;  // equal but for leading zeros: any fixed order
}

std::string property(const std::map<std::string, std::string>& props, const char* key) {
  auto it = props.find(key);
  return it == props.end() ? std::string() : it->second;
}

// ---- CPU ----------------------------------------------------------------------------------

// ARM's own cores by part number (the common ones in thin clients and SBCs); other
// implementers and parts are reported by number.
std::string arm_core_name(std::string_view implementer, std::string_view part) {
  static const std::map<std::string_view, std::string_view> kArmParts = {
      {"0xd03", "Cortex-A53"}, {"0xd04", "Cortex-A35"}, {"0xd05", "Cortex-A55"},
      {"0xd07", "Cortex-A57"}, {"0xd08", "Cortex-A72"}, {"0xd09", "Cortex-A73"},
      {"0xd0a", "Cortex-A75"}, {"0xd0b", "Cortex-A76"}, {"0xd0c", "Neoverse-N1"},
      {"0xd0d", "Cortex-A77"}, {"0xd41", "Cortex-A78"}, {"0xd46", "Cortex-A510"},
      {"0xd47", "Cortex-A710"}};
  if (implementer == "0x41") {
    if (auto it = kArmParts.find(part); it != kArmParts.end()) {
      return "ARM " + std::string(it->second);
    }
  }
  return "CPU implementer " + std::string(implementer) + " part " + std::string(part);
}

struct CpuInfo {
  std::string model;
  std::int64_t processors = 0;
};

CpuInfo parse_cpuinfo(std::string_view text) {
  // x86 says "model name"; 32-bit ARM "Processor" or "model name" and "Hardware"; MIPS "cpu
  // model"; PowerPC "cpu"; RISC-V "uarch"; arm64 only gives implementer and part numbers.
  static constexpr std::array<std::string_view, 6> kModelKeys = {
      "model name", "Processor", "cpu model", "Hardware", "cpu", "uarch"};
  std::map<std::string, std::string, std::less<>> first;
  CpuInfo info;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string key = trim(line.substr(0, colon));
    if (key == "processor") ++info.processors;
    if (!first.contains(key) && first.size() < 256) {
      first.emplace(std::move(key), trim(line.substr(colon + 1)));
    }
  }
  for (const auto key : kModelKeys) {
    if (auto it = first.find(key); it != first.end() && !it->second.empty()) {
      info.model = it->second;
      return info;
    }
  }
  auto impl = first.find("CPU implementer");
  auto part = first.find("CPU part");
  if (impl != first.end() && part != first.end()) {
    info.model = arm_core_name(impl->second, part->second);
  }
  return info;
}

// Counts the CPUs in a kernel CPU list such as "0-3,6,8-11"; nullopt if malformed.
std::optional<std::int64_t> count_cpu_list(std::string_view list) {
  std::int64_t count = 0;
  std::size_t pos = 0;
  while (pos < list.size()) {
    auto comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    const std::string_view range = list.substr(pos, comma - pos);
    pos = comma + 1;
    const auto dash = range.find('-');
    const auto lo = parse_int<std::int64_t>(range.substr(0, dash));
    const auto hi =
        dash == std::string_view::npos ? lo : parse_int<std::int64_t>(range.substr(dash + 1));
    if (!lo || !hi || *lo < 0 || *hi < *lo || *hi >= L::kCpuCount) return std::nullopt;
    count += *hi - *lo + 1;
  }
  if (count == 0 || count > L::kCpuCount) return std::nullopt;
  return count;
}

}  // namespace

std::vector<InventoryCollector::Device> InventoryCollector::sorted(std::vector<Device> devices) {
  std::sort(devices.begin(), devices.end(),
            [](const Device& a, const Device& b) { return natural_less(a.name, b.name); });
  return devices;
}

InventoryCollector::InventoryCollector(std::string sys_root, std::string proc_root,
                                       std::unique_ptr<NicQueries> nic_queries)
    : sys_root_(std::move(sys_root)),
      proc_root_(std::move(proc_root)),
      nic_queries_(nic_queries ? std::move(nic_queries) : std::make_unique<KernelNicQueries>()) {
  // libudev always reads the real /sys; for any other root the tree is listed directly.
  if (sys_root_ == "/sys") udev_.reset(udev_new());
}

std::vector<InventoryCollector::Device> InventoryCollector::enumerate(
    const char* subsystem, const std::vector<std::string>& sysfs_dirs, bool warn_if_missing,
    std::vector<std::string>& warnings) const {
  std::vector<Device> out;
  if (udev_) {
    const UdevEnumeratePtr en(udev_enumerate_new(udev_.get()));
    if (en && udev_enumerate_add_match_subsystem(en.get(), subsystem) >= 0 &&
        udev_enumerate_scan_devices(en.get()) >= 0) {
      udev_list_entry* entry = nullptr;
      udev_list_entry_foreach(entry, udev_enumerate_get_list_entry(en.get())) {
        if (out.size() == kMaxDirEntries) break;
        const UdevDevicePtr dev(
            udev_device_new_from_syspath(udev_.get(), udev_list_entry_get_name(entry)));
        if (!dev) continue;
        Device d;
        d.path = udev_list_entry_get_name(entry);
        const char* sysname = udev_device_get_sysname(dev.get());
        d.name = sysname != nullptr ? sysname : d.path.substr(d.path.rfind('/') + 1);
        for (const char* key : kUdevProperties) {
          if (const char* v = udev_device_get_property_value(dev.get(), key)) {
            d.properties.emplace(key, v);
          }
        }
        out.push_back(std::move(d));
      }
    }
    // udev found nothing (or failed): look at sysfs ourselves before concluding there is none.
    if (!out.empty()) return sorted(std::move(out));
  }
  std::optional<Error> first_error;
  for (const auto& rel : sysfs_dirs) {
    const std::string dir = sys_root_ + "/" + rel;
    auto names = list_dir(dir);
    if (!names.ok()) {
      if (!first_error) first_error = names.error();
      continue;
    }
    for (auto& name : *names) {
      std::string path = dir;
      path += '/';
      path += name;
      out.push_back(Device{std::move(name), std::move(path), {}});
    }
    return sorted(std::move(out));
  }
  if (first_error && (warn_if_missing || first_error->code != Errc::kNotFound)) {
    warnings.push_back(std::string(subsystem) + " devices: " + first_error->message);
  }
  return out;
}

InventoryReport InventoryCollector::collect() {
  InventoryReport report;
  auto& inv = report.inventory;
  auto& warnings = report.warnings;
  collect_nics(inv, warnings);
  collect_cpu_and_memory(inv, warnings);
  collect_block_devices(inv, warnings);
  collect_usb_devices(inv, warnings);
  collect_displays(inv, warnings);
  sanitize_inventory(inv, warnings);
  if (warnings.size() > kMaxWarnings) {
    const std::size_t more = warnings.size() - kMaxWarnings;
    warnings.resize(kMaxWarnings);
    warnings.push_back(std::to_string(more) + " more inventory warnings left out");
  }
  return report;
}

void InventoryCollector::collect_nics(Inventory& inv, std::vector<std::string>& warnings) {
  struct Candidate {
    bool virtual_nic = true;
    int ifindex = INT_MAX;
    const Device* device = nullptr;
  };
  const auto devices = enumerate("net", {"class/net"}, true, warnings);
  std::vector<Candidate> candidates;
  for (const auto& d : devices) {
    if (d.name == "lo") continue;
    Candidate c;
    c.device = &d;
    c.virtual_nic = !exists(d.path + "/device");
    if (auto idx = read_line(d.path + "/ifindex"))
      c.ifindex = parse_int<int>(*idx).value_or(c.ifindex);
    candidates.push_back(c);
  }
  // Hardware NICs first, then by creation order: if a host has more interfaces than the
  // protocol carries (hundreds of veths), the ones left out are virtual.
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) {
                     return std::tie(a.virtual_nic, a.ifindex) < std::tie(b.virtual_nic, b.ifindex);
                   });
  if (candidates.size() > L::kNics) {
    warnings.push_back(std::to_string(candidates.size() - L::kNics) +
                       " network interfaces left out: the inventory carries at most " +
                       std::to_string(L::kNics));
    candidates.resize(L::kNics);
  }

  std::map<std::string, std::vector<std::string>> addresses;
  if (!candidates.empty()) {
    auto listed = nic_queries_->addresses();
    if (listed.ok()) {
      addresses = std::move(listed).value();
    } else {
      warnings.push_back("network addresses: " + listed.error().message);
    }
  }

  for (const auto& c : candidates) {
    const Device& d = *c.device;
    protocol::NicInfo nic;
    nic.name = clean_text(d.name, L::kNicName);
    if (auto address = read_attr(d.path + "/address"); address.ok()) {
      // Interfaces without a link-layer address (tun, wireguard) have an empty file; others
      // (ipip, ifb) may carry one that names no NIC: both are reported as "no MAC".
      auto mac = protocol::MacAddress::parse(trim(*address));
      if (mac.ok()) nic.mac = mac->to_string();
    } else {
      warnings.push_back(nic.name + ": " + address.error().message);
    }
    nic.driver = link_basename(d.path + "/device/driver");
    if (nic.driver.empty()) nic.driver = nic_queries_->driver_name(d.name);
    nic.driver = clean_text(nic.driver, L::kDriver);

    // operstate is RFC 2863's view; "unknown" is what drivers that do not track it (tun,
    // some virtual NICs) report, and then carrier says whether frames can flow.
    const auto operstate = read_line(d.path + "/operstate");
    if (operstate == "up") {
      nic.link_up = true;
    } else if (!operstate || operstate == "unknown") {
      // carrier cannot be read while the interface is down (EINVAL): that is "not up".
      nic.link_up = read_line(d.path + "/carrier") == "1";
      if (!operstate) warnings.push_back(nic.name + ": cannot read " + d.path + "/operstate");
    }
    if (nic.link_up) {
      // "-1" (or 2^32-1 from old kernels) means unknown, as does anything out of range.
      if (auto speed = read_line(d.path + "/speed")) {
        auto mbps = parse_int<std::int64_t>(*speed);
        if (mbps && *mbps > 0 && *mbps <= L::kSpeedMbps) nic.speed_mbps = *mbps;
      }
    }
    if (auto it = addresses.find(d.name); it != addresses.end()) nic.addresses = it->second;
    if (auto wol = nic_queries_->wake_on_lan(d.name); wol.ok()) {
      nic.wol_supported = wol->supported;
      nic.wol_enabled = wol->enabled;
    } else if (wol.error().code != Errc::kNotFound) {  // gone since it was listed: no news
      warnings.push_back(nic.name + ": " + wol.error().message);
    }
    inv.nics.push_back(std::move(nic));
  }
}

void InventoryCollector::collect_cpu_and_memory(Inventory& inv,
                                                std::vector<std::string>& warnings) const {
  CpuInfo cpu;
  if (auto text = read_attr(proc_root_ + "/cpuinfo", kProcMax); text.ok()) {
    cpu = parse_cpuinfo(*text);
    if (cpu.model.empty()) {
      warnings.push_back("CPU model: no model field in " + proc_root_ + "/cpuinfo");
    }
  } else {
    warnings.push_back("CPU model: " + text.error().message);
  }
  inv.cpu_model = clean_text(cpu.model, L::kCpuModel);

  // The online CPUs, as sysconf(_SC_NPROCESSORS_ONLN) counts them.
  const std::string online = sys_root_ + "/devices/system/cpu/online";
  std::optional<std::int64_t> count;
  if (auto list = read_line(online)) count = count_cpu_list(*list);
  // Old ARM kernels print no "processor" lines on a single core: a model alone means one CPU.
  if (!count && cpu.processors > 0) count = std::min(cpu.processors, L::kCpuCount);
  if (!count && !cpu.model.empty()) count = 1;
  if (count) {
    inv.cpu_count = *count;
  } else {
    warnings.push_back("CPU count: cannot read " + online + " or count processors in " +
                       proc_root_ + "/cpuinfo");
  }

  const std::string meminfo_path = proc_root_ + "/meminfo";
  auto meminfo = read_attr(meminfo_path, kProcMax);
  if (!meminfo.ok()) {
    warnings.push_back("memory: " + meminfo.error().message);
    return;
  }
  std::string_view text = *meminfo;
  const auto at = text.find("MemTotal:");
  std::optional<std::int64_t> kb;
  if (at != std::string_view::npos && (at == 0 || text[at - 1] == '\n')) {
    std::string_view rest = text.substr(at + 9);
    rest = rest.substr(0, rest.find('\n'));
    const std::string value = trim(rest.substr(0, rest.find(" kB")));
    kb = parse_int<std::int64_t>(value);
  }
  if (kb && *kb >= 0 && *kb <= L::kBytes) {
    inv.memory_kb = *kb;
  } else {
    warnings.push_back("memory: no valid MemTotal in " + meminfo_path);
  }
}

void InventoryCollector::collect_block_devices(Inventory& inv,
                                               std::vector<std::string>& warnings) const {
  // /sys/class/block lists disks and partitions; old kernels only have /sys/block (disks).
  const auto devices = enumerate("block", {"class/block", "block"}, true, warnings);
  for (const auto& d : devices) {
    if (exists(d.path + "/partition")) continue;
    protocol::BlockDeviceInfo b;
    b.name = clean_text(d.name, L::kBlockName);
    const auto sectors_text = read_line(d.path + "/size");
    const auto sectors = sectors_text ? parse_int<std::int64_t>(*sectors_text) : std::nullopt;
    if (!sectors || *sectors < 0) {
      warnings.push_back(b.name + ": cannot read its size from " + d.path + "/size");
      continue;
    }
    // sysfs counts 512-byte sectors whatever the device's own block size.
    b.size_bytes = *sectors > L::kBytes / 512 ? L::kBytes : *sectors * 512;
    b.removable = read_line(d.path + "/removable") == "1";
    // Unused loop and ram devices have size 0; an empty card reader is removable and stays.
    if (b.size_bytes == 0 && !b.removable) continue;
    // SCSI/ATA/NVMe/virtio-scsi have device/model, MMC/SD cards device/name; udevd's
    // database may know more.
    std::string model = read_line(d.path + "/device/model").value_or("");
    if (model.empty()) model = read_line(d.path + "/device/name").value_or("");
    if (model.empty()) model = property(d.properties, "ID_MODEL_FROM_DATABASE");
    if (model.empty()) model = property(d.properties, "ID_MODEL");
    b.model = clean_text(model, L::kModel);
    inv.block_devices.push_back(std::move(b));
  }
}

void InventoryCollector::collect_usb_devices(Inventory& inv,
                                             std::vector<std::string>& warnings) const {
  // No USB bus (this VM, many containers) is not a fault: no warning when it is absent.
  const auto devices = enumerate("usb", {"bus/usb/devices"}, false, warnings);
  for (const auto& d : devices) {
    // "1-1:1.0" are interfaces of a device; "usb1" are the root hubs of the host controllers,
    // which every machine has and which say nothing about what is plugged in.
    if (d.name.find(':') != std::string::npos || d.name.rfind("usb", 0) == 0) continue;
    protocol::UsbDeviceInfo u;
    bool ids_ok = true;
    const std::array<std::pair<const char*, std::string*>, 2> ids = {
        {{"idVendor", &u.vendor_id}, {"idProduct", &u.product_id}}};
    for (const auto& [file, out] : ids) {
      std::string id = read_line(d.path + "/" + file).value_or("");
      std::transform(id.begin(), id.end(), id.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (id.size() != 4 || id.find_first_not_of("0123456789abcdef") != std::string::npos) {
        ids_ok = false;
        break;
      }
      *out = id;
    }
    if (!ids_ok) {
      warnings.push_back("USB device " + clean_text(d.name, 64) + ": no valid idVendor/idProduct");
      continue;
    }
    // The device's own strings are optional (many devices have none); the hardware database
    // fills in vendor and product names when udevd has run.
    u.manufacturer = read_line(d.path + "/manufacturer").value_or("");
    if (u.manufacturer.empty()) u.manufacturer = property(d.properties, "ID_VENDOR_FROM_DATABASE");
    u.product = read_line(d.path + "/product").value_or("");
    if (u.product.empty()) u.product = property(d.properties, "ID_MODEL_FROM_DATABASE");
    u.serial = read_line(d.path + "/serial").value_or("");
    u.manufacturer = clean_text(u.manufacturer, L::kUsbString);
    u.product = clean_text(u.product, L::kUsbString);
    u.serial = clean_text(u.serial, L::kUsbString);
    inv.usb_devices.push_back(std::move(u));
  }
}

void InventoryCollector::collect_displays(Inventory& inv,
                                          std::vector<std::string>& warnings) const {
  const auto devices = enumerate("drm", {"class/drm"}, false, warnings);
  for (const auto& d : devices) {
    // Connectors are "card<N>-<connector>"; "card0", "renderD128" are not.
    if (d.name.rfind("card", 0) != 0) continue;
    const auto dash = d.name.find('-');
    if (dash == std::string::npos || dash == 4 || dash + 1 == d.name.size() ||
        d.name.substr(4, dash - 4).find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    protocol::DisplayInfo display;
    display.connector = clean_text(d.name.substr(dash + 1), L::kConnector);
    const auto status = read_line(d.path + "/status");
    if (!status) warnings.push_back(display.connector + ": cannot read " + d.path + "/status");
    display.connected = status == "connected";
    // "modes" lists one mode per line, preferred first; the same size appears once per
    // refresh rate, which the protocol does not carry, so each is kept once.
    if (auto modes = read_attr(d.path + "/modes", kModesMax); modes.ok()) {
      std::set<std::string> seen;
      std::string_view text = *modes;
      while (!text.empty() && display.modes.size() < L::kModes) {
        const auto eol = std::min(text.find('\n'), text.size());
        std::string mode = clean_text(text.substr(0, eol), L::kMode);
        text.remove_prefix(std::min(eol + 1, text.size()));
        if (!mode.empty() && seen.insert(mode).second) display.modes.push_back(std::move(mode));
      }
    }
    inv.displays.push_back(std::move(display));
  }
}

}  // namespace tether::platform
