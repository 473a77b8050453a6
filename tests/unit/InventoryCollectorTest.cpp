#include "platform/InventoryCollector.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "InventoryTestSupport.h"
#include "Subprocess.h"
#include "platform/InventorySanitizer.h"
#include "protocol/JsonFieldReader.h"
#include "protocol/MacAddress.h"

namespace tether::platform {
namespace {

using protocol::Inventory;
using testing::expect_round_trip;
using testing::FakeNicQueries;
using testing::FakeTree;

bool contains(const std::vector<std::string>& list, std::string_view needle) {
  return std::any_of(list.begin(), list.end(),
                     [&](const std::string& s) { return s.find(needle) != std::string::npos; });
}

std::string join(const std::vector<std::string>& list) {
  std::string out;
  for (const auto& s : list) out += "  " + s + "\n";
  return out;
}

InventoryReport collect(const FakeTree& tree, std::unique_ptr<FakeNicQueries> q = nullptr) {
  if (!q) q = std::make_unique<FakeNicQueries>();
  InventoryCollector collector(tree.sys(), tree.proc(), std::move(q));
  EXPECT_FALSE(collector.uses_udev());
  return collector.collect();
}

// Checks every string of the inventory against its protocol rule directly (not only through
// the decoder), so that a cap that is off by one shows here with the field's name.
void expect_within_limits(const Inventory& inv) {
  using L = InventoryLimits;
  using protocol::StringKind;
  const auto single_line = [](const std::string& s, std::size_t max, const char* what) {
    EXPECT_LE(s.size(), max) << what;
    EXPECT_TRUE(protocol::string_is_kind(s, StringKind::kSingleLine)) << what << ": " << s;
  };
  single_line(inv.cpu_model, L::kCpuModel, "cpu_model");
  EXPECT_LE(inv.nics.size(), L::kNics);
  for (const auto& n : inv.nics) {
    single_line(n.name, L::kNicName, "nic name");
    single_line(n.driver, L::kDriver, "driver");
    EXPECT_LE(n.addresses.size(), L::kAddresses);
    for (const auto& a : n.addresses) single_line(a, L::kAddress, "address");
  }
  EXPECT_LE(inv.block_devices.size(), L::kBlockDevices);
  for (const auto& b : inv.block_devices) {
    single_line(b.name, L::kBlockName, "block name");
    single_line(b.model, L::kModel, "block model");
  }
  EXPECT_LE(inv.usb_devices.size(), L::kUsbDevices);
  for (const auto& u : inv.usb_devices) {
    single_line(u.manufacturer, L::kUsbString, "manufacturer");
    single_line(u.product, L::kUsbString, "product");
    single_line(u.serial, L::kUsbString, "serial");
  }
  EXPECT_LE(inv.displays.size(), L::kDisplays);
  for (const auto& d : inv.displays) {
    single_line(d.connector, L::kConnector, "connector");
    EXPECT_LE(d.modes.size(), L::kModes);
    for (const auto& m : d.modes) single_line(m, L::kMode, "mode");
  }
}

// ---- A complete fake machine ---------------------------------------------------------------

void fill_machine(const FakeTree& t) {
  t.nic("lo", "00:00:00:00:00:00", "unknown", 1);
  t.nic("eth0", "52:54:00:AB:cd:01", "up", 2, "e1000e", "1", "1000");
  t.nic("wlan0", "02:11:22:33:44:55", "dormant", 3, "iwlwifi", "0", "");
  t.nic("tun0", "", "unknown", 5, "", "1", "10");  // no MAC, no device: virtual
  t.nic("veth9", "0a:00:00:00:00:09", "down", 4);  // virtual, driver from ethtool
  t.nic("ipip0", "00:00:00:00", "down", 6);        // a link-layer address that is no MAC

  t.file("proc/cpuinfo",
         "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Celeron(R) J4125 "
         "CPU @ 2.00GHz\n\nprocessor\t: 1\nmodel name\t: Intel(R) Celeron(R) J4125 CPU @ "
         "2.00GHz\n");
  t.file("sys/devices/system/cpu/online", "0-3,6\n");
  t.file("proc/meminfo", "MemTotal:        8029384 kB\nMemFree:          123456 kB\n");

  t.file("sys/class/block/sda/size", "1953525168\n");
  t.file("sys/class/block/sda/removable", "0\n");
  t.file("sys/class/block/sda/device/model", "Samsung SSD 870  \n");
  t.file("sys/class/block/sda1/size", "2048\n");
  t.file("sys/class/block/sda1/partition", "1\n");
  t.file("sys/class/block/loop0/size", "0\n");
  t.file("sys/class/block/loop0/removable", "0\n");
  t.file("sys/class/block/loop1/size", "8\n");
  t.file("sys/class/block/mmcblk0/size", "0\n");
  t.file("sys/class/block/mmcblk0/removable", "1\n");
  t.file("sys/class/block/mmcblk0/device/name", "SD64G\n");

  t.file("sys/bus/usb/devices/usb1/idVendor", "1d6b\n");  // a root hub: left out
  t.file("sys/bus/usb/devices/usb1/idProduct", "0002\n");
  t.file("sys/bus/usb/devices/1-1/idVendor", "046D\n");
  t.file("sys/bus/usb/devices/1-1/idProduct", "c52b\n");
  t.file("sys/bus/usb/devices/1-1/manufacturer", "Logitech\n");
  t.file("sys/bus/usb/devices/1-1/product", "USB Receiver\n");
  t.file("sys/bus/usb/devices/1-1/serial", "ABC123\n");
  t.file("sys/bus/usb/devices/1-1:1.0/bInterfaceClass", "03\n");  // an interface: left out
  t.file("sys/bus/usb/devices/2-3/idVendor", "0781\n");           // no strings at all
  t.file("sys/bus/usb/devices/2-3/idProduct", "5581\n");

  t.file("sys/class/drm/card0/dev", "226:0\n");
  t.file("sys/class/drm/renderD128/dev", "226:128\n");
  t.file("sys/class/drm/card0-HDMI-A-1/status", "connected\n");
  t.file("sys/class/drm/card0-HDMI-A-1/modes",
         "1920x1080\n1920x1080\n1280x720\n1920x1080i\n1280x720\n");
  t.file("sys/class/drm/card0-DP-1/status", "disconnected\n");
  t.file("sys/class/drm/card0-DP-1/modes", "");
}

TEST(InventoryCollectorTest, ReadsEveryFieldOfAFakeMachine) {
  FakeTree tree;
  fill_machine(tree);
  auto q = std::make_unique<FakeNicQueries>();
  q->address_map["eth0"] = {"10.1.2.3/24", "fe80::5054:ff:feab:cd01/64"};
  q->address_map["lo"] = {"127.0.0.1/8"};
  q->wol["eth0"] = {"pumbg", "g"};
  q->wol["wlan0"] = {"", ""};
  q->drivers["veth9"] = "veth";
  q->drivers["tun0"] = "tun";
  q->drivers["eth0"] = "not-this-one";  // the device/driver link wins
  const InventoryReport report = collect(tree, std::move(q));
  EXPECT_TRUE(report.warnings.empty()) << join(report.warnings);

  Inventory want;
  want.cpu_model = "Intel(R) Celeron(R) J4125 CPU @ 2.00GHz";
  want.cpu_count = 5;
  want.memory_kb = 8029384;
  // Hardware NICs first, then virtual ones by ifindex; "lo" is not listed.
  want.nics = {
      {.name = "eth0",
       .mac = "52:54:00:ab:cd:01",
       .driver = "e1000e",
       .link_up = true,
       .speed_mbps = 1000,
       .addresses = {"10.1.2.3/24", "fe80::5054:ff:feab:cd01/64"},
       .wol_supported = "pumbg",
       .wol_enabled = "g"},
      {.name = "wlan0", .mac = "02:11:22:33:44:55", .driver = "iwlwifi", .link_up = false},
      {.name = "veth9", .mac = "0a:00:00:00:00:09", .driver = "veth", .link_up = false},
      {.name = "tun0", .mac = "", .driver = "tun", .link_up = true, .speed_mbps = 10},
      {.name = "ipip0", .mac = "", .driver = "", .link_up = false},
  };
  want.block_devices = {
      {.name = "loop1", .model = "", .size_bytes = 4096, .removable = false},
      {.name = "mmcblk0", .model = "SD64G", .size_bytes = 0, .removable = true},
      {.name = "sda",
       .model = "Samsung SSD 870",
       .size_bytes = 1953525168LL * 512,
       .removable = false},
  };
  want.usb_devices = {
      {.vendor_id = "046d",
       .product_id = "c52b",
       .manufacturer = "Logitech",
       .product = "USB Receiver",
       .serial = "ABC123"},
      {.vendor_id = "0781", .product_id = "5581"},
  };
  want.displays = {
      {.connector = "DP-1", .connected = false, .modes = {}},
      {.connector = "HDMI-A-1",
       .connected = true,
       .modes = {"1920x1080", "1280x720", "1920x1080i"}},
  };
  EXPECT_EQ(report.inventory.cpu_model, want.cpu_model);
  EXPECT_EQ(report.inventory.cpu_count, want.cpu_count);
  EXPECT_EQ(report.inventory.memory_kb, want.memory_kb);
  ASSERT_EQ(report.inventory.nics.size(), want.nics.size());
  for (std::size_t i = 0; i < want.nics.size(); ++i) {
    EXPECT_TRUE(report.inventory.nics[i] == want.nics[i])
        << "nic " << i << " (" << want.nics[i].name << ")";
  }
  EXPECT_TRUE(report.inventory.block_devices == want.block_devices);
  EXPECT_TRUE(report.inventory.usb_devices == want.usb_devices);
  EXPECT_TRUE(report.inventory.displays == want.displays);
  EXPECT_TRUE(report.inventory == want);
  expect_round_trip(report.inventory);
}

TEST(InventoryCollectorTest, CpuModelOnOtherArchitectures) {
  struct Case {
    const char* cpuinfo;
    const char* model;
  };
  const Case cases[] = {
      // arm64: numbers only
      {"processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
       "CPU variant\t: 0x0\nCPU part\t: 0xd08\n\nprocessor\t: 1\n",
       "ARM Cortex-A72"},
      {"processor\t: 0\nCPU implementer\t: 0x51\nCPU part\t: 0x802\n",
       "CPU implementer 0x51 part 0x802"},
      // 32-bit ARM with a board name
      {"processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nHardware\t: BCM2835\n",
       "ARMv7 Processor rev 4 (v7l)"},
      {"Processor\t: ARMv6-compatible processor rev 7 (v6l)\nHardware\t: BCM2708\n",
       "ARMv6-compatible processor rev 7 (v6l)"},
      {"processor\t: 0\nHardware\t: Freescale i.MX6\n", "Freescale i.MX6"},
      // MIPS, PowerPC, RISC-V
      {"system type\t\t: MT7621\nprocessor\t\t: 0\ncpu model\t\t: MIPS 1004Kc V2.15\n",
       "MIPS 1004Kc V2.15"},
      {"processor\t: 0\ncpu\t\t: POWER9 (raw), altivec supported\n",
       "POWER9 (raw), altivec supported"},
      {"processor\t: 0\nhart\t\t: 0\nisa\t\t: rv64imafdc\nmmu\t\t: sv39\nuarch\t\t: "
       "sifive,u74-mc\n",
       "sifive,u74-mc"},
  };
  for (const auto& c : cases) {
    FakeTree tree;
    tree.file("proc/cpuinfo", c.cpuinfo);
    tree.file("proc/meminfo", "MemTotal: 1000 kB\n");
    const auto report = collect(tree);
    EXPECT_EQ(report.inventory.cpu_model, c.model);
    // No online file: the processors in cpuinfo are counted.
    EXPECT_GE(report.inventory.cpu_count, 1) << c.model;
  }
}

TEST(InventoryCollectorTest, MissingFilesGiveWarningsNotFailures) {
  FakeTree tree;  // nothing at all
  const auto empty = collect(tree);
  EXPECT_TRUE(contains(empty.warnings, "/proc/cpuinfo")) << join(empty.warnings);
  EXPECT_TRUE(contains(empty.warnings, "/proc/meminfo")) << join(empty.warnings);
  EXPECT_TRUE(contains(empty.warnings, "class/net")) << join(empty.warnings);
  EXPECT_TRUE(contains(empty.warnings, "block")) << join(empty.warnings);
  EXPECT_TRUE(contains(empty.warnings, "CPU count")) << join(empty.warnings);
  // No USB bus and no DRM are normal (thin clients without them, containers): no warning.
  EXPECT_FALSE(contains(empty.warnings, "usb")) << join(empty.warnings);
  EXPECT_FALSE(contains(empty.warnings, "drm")) << join(empty.warnings);
  EXPECT_TRUE(empty.inventory == Inventory{});
  expect_round_trip(empty.inventory);

  // Present devices with files missing: each is still listed (or skipped) with a warning.
  FakeTree partial;
  partial.dir("sys/class/net/eth0");  // no address, no operstate
  partial.file("sys/class/net/eth1/address", "52:54:00:00:00:01\n");
  partial.file("sys/class/net/eth1/operstate", "up\n");
  partial.dir("sys/class/block/sdb");                          // no size
  partial.file("sys/bus/usb/devices/1-2/idVendor", "zzzz\n");  // not hex
  partial.dir("sys/class/drm/card0-eDP-1");                    // no status
  partial.file("proc/cpuinfo", "flags\t: fpu\n");              // no model field
  partial.file("proc/meminfo", "MemFree: 12 kB\n");            // no MemTotal
  auto q = std::make_unique<FakeNicQueries>();
  q->address_error = make_error(Errc::kIo, "cannot list interface addresses: test");
  q->wol_errors["eth1"] = make_error(Errc::kIo, "cannot read wake-on-LAN settings of eth1: x");
  q->wol_errors["eth0"] = make_error(Errc::kNotFound, "no network interface eth0");
  const auto report = collect(partial, std::move(q));
  const auto& w = report.warnings;
  EXPECT_TRUE(contains(w, "eth0/address")) << join(w);
  EXPECT_TRUE(contains(w, "eth0/operstate")) << join(w);
  EXPECT_TRUE(contains(w, "cannot list interface addresses")) << join(w);
  EXPECT_TRUE(contains(w, "wake-on-LAN settings of eth1")) << join(w);
  EXPECT_FALSE(contains(w, "no network interface eth0")) << "vanished NICs are no news";
  EXPECT_TRUE(contains(w, "sdb")) << join(w);
  EXPECT_TRUE(contains(w, "USB device 1-2")) << join(w);
  EXPECT_TRUE(contains(w, "eDP-1")) << join(w);
  EXPECT_TRUE(contains(w, "no model field")) << join(w);
  EXPECT_TRUE(contains(w, "MemTotal")) << join(w);
  ASSERT_EQ(report.inventory.nics.size(), 2U);
  EXPECT_EQ(report.inventory.nics[0].name, "eth0");
  EXPECT_EQ(report.inventory.nics[0].mac, "");
  EXPECT_EQ(report.inventory.nics[1].mac, "52:54:00:00:00:01");
  EXPECT_TRUE(report.inventory.nics[1].link_up);
  EXPECT_TRUE(report.inventory.block_devices.empty());
  EXPECT_TRUE(report.inventory.usb_devices.empty());
  ASSERT_EQ(report.inventory.displays.size(), 1U);
  EXPECT_FALSE(report.inventory.displays[0].connected);
  expect_round_trip(report.inventory);

  // The same collection twice gives the same warnings, so that the caller's "log each once"
  // works.
  auto q2 = std::make_unique<FakeNicQueries>();
  q2->address_error = make_error(Errc::kIo, "cannot list interface addresses: test");
  q2->wol_errors["eth1"] = make_error(Errc::kIo, "cannot read wake-on-LAN settings of eth1: x");
  q2->wol_errors["eth0"] = make_error(Errc::kNotFound, "no network interface eth0");
  EXPECT_EQ(collect(partial, std::move(q2)).warnings, w);
}

TEST(InventoryCollectorTest, HostileContentIsCappedAndStillDecodes) {
  FakeTree tree;
  const std::string megabyte(1024 * 1024, 'M');
  const std::string controls = std::string("Evil\x01\x1b[31mRed\x7f\ttab\n", 19) + "\xff\xfe" +
                               "\xc2\x85" + "ok\xe2\x82\xac";
  const std::string long300(300, 'x');
  const std::string long255(255, 'n');  // NAME_MAX: the longest name a directory can hold

  tree.file("proc/cpuinfo", "model name\t: " + megabyte + "\n");
  tree.file("proc/meminfo", "MemTotal: 99999999999999999999999 kB\n");
  tree.file("sys/devices/system/cpu/online", "0-99999999\n");

  // 1000 interfaces; some with hostile names and files.
  auto q = std::make_unique<FakeNicQueries>();
  for (int i = 0; i < 1000; ++i) {
    const std::string name = i == 0 ? long255 : "veth" + std::to_string(i);
    tree.nic(name, i == 1 ? megabyte : "0a:00:00:00:00:01", i % 3 == 0 ? "up" : "down", i + 2,
             i < 3 ? "drv" : "", "1", i == 0 ? "99999999999" : "100");
    // A few with 100 long addresses: enough to test the caps, not so many that the message
    // budget leaves nothing else in.
    if (i < 5) q->address_map[name] = std::vector<std::string>(100, long300 + "/24");
    q->wol[name] = {"pumbagsfdXYZ" + controls, "gggggggggggggggggggggggggg"};
    q->drivers[name] = long300 + controls;
  }
  tree.file("sys/class/net/veth5/address", controls);

  // Disks: a 1 MB model, control characters, a huge size; 300 of them.
  for (int i = 0; i < 300; ++i) {
    const std::string base = "sys/class/block/sd" + std::to_string(i) + "/";
    tree.file(base + "size", i == 0 ? "99999999999999999999\n" : "1000\n");
    tree.file(base + "device/model", i == 0 ? megabyte : controls + long300);  // 1 MB once
  }
  // USB: 300 devices with 1 MB strings, control characters, bad ids.
  for (int i = 0; i < 300; ++i) {
    const std::string base = "sys/bus/usb/devices/1-" + std::to_string(i) + "/";
    tree.file(base + "idVendor", i == 7 ? "12345\n" : "abcd\n");
    tree.file(base + "idProduct", "ef01\n");
    tree.file(base + "manufacturer", i < 2 ? megabyte : long300 + controls);
    tree.file(base + "product", controls);
    tree.file(base + "serial", long300);
  }
  // Displays: 100 connectors with 1000 long modes each.
  std::string modes;
  for (int i = 0; i < 1000; ++i) modes += std::to_string(i) + "x" + long300 + "\n";
  for (int i = 0; i < 100; ++i) {
    const std::string base = "sys/class/drm/card0-HDMI-A-" + std::to_string(i) + "/";
    tree.file(base + "status", "connected\n");
    tree.file(base + "modes", i == 0 ? megabyte : i < 4 ? modes : "1024x768\n");
  }
  tree.file("sys/class/drm/card1-" + long300.substr(0, 240) + "/status", controls);

  const auto report = collect(tree, std::move(q));
  const Inventory& inv = report.inventory;
  expect_within_limits(inv);
  EXPECT_EQ(inv.cpu_model, std::string(InventoryLimits::kCpuModel, 'M'));
  EXPECT_EQ(inv.memory_kb, 0) << "an unparseable MemTotal is left out";
  EXPECT_GE(inv.cpu_count, 0);
  EXPECT_LE(inv.cpu_count, InventoryLimits::kCpuCount);
  EXPECT_FALSE(inv.nics.empty());
  EXPECT_LE(inv.nics.size(), InventoryLimits::kNics);
  // The three hardware NICs come first, whatever their ifindex.
  ASSERT_GE(inv.nics.size(), 3U);
  EXPECT_EQ(inv.nics[0].name, std::string(InventoryLimits::kNicName, 'n'));
  EXPECT_EQ(inv.nics[0].driver, "drv");
  EXPECT_FALSE(inv.nics[0].speed_mbps.has_value()) << "speed out of range is unknown";
  EXPECT_EQ(inv.nics[0].wol_supported, "pumbagsfd");
  EXPECT_EQ(inv.nics[0].wol_enabled, "g");
  EXPECT_EQ(inv.nics[1].mac, "") << "a 1 MB address file is no MAC";
  EXPECT_TRUE(contains(report.warnings, "left out")) << join(report.warnings);
  EXPECT_LE(report.warnings.size(), InventoryCollector::kMaxWarnings + 1);
  // USB: the one with a bad id is left out with a warning.
  EXPECT_TRUE(contains(report.warnings, "USB device 1-7")) << join(report.warnings);
  EXPECT_FALSE(inv.usb_devices.empty());
  EXPECT_FALSE(inv.block_devices.empty());
  EXPECT_FALSE(inv.displays.empty());
  for (const auto& u : inv.usb_devices) {
    EXPECT_EQ(u.vendor_id, "abcd");
    EXPECT_TRUE(u.manufacturer == std::string(128, 'M') || u.manufacturer == std::string(128, 'x'))
        << u.manufacturer;
    EXPECT_EQ(u.product, "Evil?\?[31mRed? tab") << "the first line, cleaned";
  }
  for (const auto& d : inv.displays) {
    for (const auto& m : d.modes) EXPECT_LE(m.size(), InventoryLimits::kMode);
  }
  const std::size_t size = expect_round_trip(inv);
  EXPECT_LE(size, protocol::up_json_limits().max_bytes);
  std::cout << "hostile inventory: " << inv.nics.size() << " NICs, " << inv.block_devices.size()
            << " disks, " << inv.usb_devices.size() << " USB devices, " << inv.displays.size()
            << " displays, " << size << " bytes, " << report.warnings.size() << " warnings\n";
}

TEST(InventoryCollectorTest, OneThousandPlainInterfacesAreCappedAt256) {
  FakeTree tree;
  for (int i = 0; i < 1000; ++i) {
    tree.nic("veth" + std::to_string(i), "0a:00:00:00:00:02", "up", 1000 - i);
  }
  tree.nic("eth0", "52:54:00:00:00:01", "up", 5000, "e1000e");
  tree.file("proc/cpuinfo", "model name\t: x\n");
  tree.file("proc/meminfo", "MemTotal: 1 kB\n");
  const auto report = collect(tree);
  ASSERT_EQ(report.inventory.nics.size(), 256U);
  EXPECT_EQ(report.inventory.nics[0].name, "eth0") << "the hardware NIC is kept";
  EXPECT_EQ(report.inventory.nics[1].name, "veth999") << "then the lowest ifindex";
  EXPECT_TRUE(contains(report.warnings, "745 network interfaces left out"))
      << join(report.warnings);
  expect_round_trip(report.inventory);
}

TEST(InventoryCollectorTest, MessageSizeLimitLeavesOutItemsWithAWarning) {
  // 256 NICs with 64 addresses of 60 bytes each would be about a megabyte: over the 256 KiB
  // UP limit. Every item is valid alone; the whole must still fit.
  FakeTree tree;
  auto q = std::make_unique<FakeNicQueries>();
  for (int i = 0; i < 256; ++i) {
    const std::string name = "eth" + std::to_string(i);
    tree.nic(name, "52:54:00:00:00:01", "up", i + 1, "e1000e");
    for (int a = 0; a < 64; ++a) {
      q->address_map[name].push_back("2001:db8:aaaa:bbbb:cccc:dddd:" + std::to_string(1000 + a) +
                                     ":1/64" + std::string(20, '0'));
    }
  }
  tree.file("sys/bus/usb/devices/1-1/idVendor", "abcd\n");
  tree.file("sys/bus/usb/devices/1-1/idProduct", "0001\n");
  const auto report = collect(tree, std::move(q));
  EXPECT_LT(report.inventory.nics.size(), 256U);
  EXPECT_GT(report.inventory.nics.size(), 10U);
  EXPECT_EQ(report.inventory.usb_devices.size(), 1U) << "a small item still fits";
  EXPECT_TRUE(contains(report.warnings, "to keep the inventory message within"))
      << join(report.warnings);
  const std::size_t size = expect_round_trip(report.inventory);
  EXPECT_LE(size, protocol::up_json_limits().max_bytes);
  EXPECT_GT(size, protocol::up_json_limits().max_bytes * 9 / 10) << "the budget is used";
}

TEST(InventoryCollectorTest, FifoAndDirectoriesInPlaceOfFilesDoNotHang) {
  FakeTree tree;
  tree.dir("sys/class/net/eth0/address");  // a directory where a file should be
  tree.dir("proc");
  ASSERT_EQ(::mkfifo((tree.proc() + "/cpuinfo").c_str(), 0600), 0);
  tree.file("proc/meminfo", "MemTotal: 2048 kB\n");
  const auto report = collect(tree);
  EXPECT_TRUE(contains(report.warnings, "cpuinfo")) << join(report.warnings);
  EXPECT_TRUE(contains(report.warnings, "eth0")) << join(report.warnings);
  EXPECT_EQ(report.inventory.memory_kb, 2048);
  expect_round_trip(report.inventory);
}

// ---- This machine ------------------------------------------------------------------------

nlohmann::json run_ip_json(const std::vector<std::string>& args) {
  const auto ip = testing::find_program("ip");
  if (!ip) return nullptr;
  std::vector<std::string> argv{*ip, "-j"};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto r = testing::run_command(argv);
  EXPECT_EQ(r.exit_code, 0);
  return nlohmann::json::parse(r.output, nullptr, false);
}

const protocol::NicInfo* find_nic(const Inventory& inv, const std::string& name) {
  for (const auto& n : inv.nics) {
    if (n.name == name) return &n;
  }
  return nullptr;
}

TEST(InventoryCollectorRealTest, ListsTheInterfacesIpListsWithTheirMacs) {
  const nlohmann::json links = run_ip_json({"link"});
  if (!links.is_array()) GTEST_SKIP() << "the ip program (iproute2) is not installed";
  InventoryCollector collector;
  const auto report = collector.collect();
  for (const auto& w : report.warnings) std::cout << "warning: " << w << "\n";
  std::cout << "enumerated with " << (collector.uses_udev() ? "libudev" : "sysfs") << "\n";
  std::size_t compared = 0;
  for (const auto& link : links) {
    const std::string name = link.value("ifname", "");
    if (name == "lo" || name.empty()) continue;
    const protocol::NicInfo* nic = find_nic(report.inventory, name);
    ASSERT_NE(nic, nullptr) << name << " is missing";
    auto mac = protocol::MacAddress::parse(link.value("address", ""));
    EXPECT_EQ(nic->mac, mac.ok() ? mac->to_string() : "") << name;
    ++compared;
  }
  EXPECT_EQ(find_nic(report.inventory, "lo"), nullptr);
  EXPECT_GT(compared, 0U);

  // Addresses as `ip -j addr` shows them, in CIDR form.
  const nlohmann::json addrs = run_ip_json({"addr"});
  for (const auto& link : addrs) {
    const protocol::NicInfo* nic = find_nic(report.inventory, link.value("ifname", ""));
    if (nic == nullptr) continue;
    for (const auto& a : link.value("addr_info", nlohmann::json::array())) {
      const std::string cidr =
          a.value("local", "") + "/" + std::to_string(a.value("prefixlen", -1));
      EXPECT_NE(std::find(nic->addresses.begin(), nic->addresses.end(), cidr), nic->addresses.end())
          << nic->name << " lacks " << cidr;
    }
  }
}

TEST(InventoryCollectorRealTest, CpuCountAndMemoryMatchTheSystem) {
  InventoryCollector collector;
  const auto report = collector.collect();
  EXPECT_EQ(report.inventory.cpu_count, ::sysconf(_SC_NPROCESSORS_ONLN));
  EXPECT_FALSE(report.inventory.cpu_model.empty());
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::int64_t kb = -1;
  while (meminfo >> key) {
    if (key == "MemTotal:") {
      meminfo >> kb;
      break;
    }
  }
  EXPECT_EQ(report.inventory.memory_kb, kb);
}

TEST(InventoryCollectorRealTest, WholeInventoryPassesTheDecoder) {
  InventoryCollector collector;
  const auto report = collector.collect();
  expect_within_limits(report.inventory);
  const std::size_t size = expect_round_trip(report.inventory);
  std::cout << protocol::encode_body(protocol::UpBody{report.inventory}).dump(2) << "\n"
            << size << " bytes\n";
}

TEST(InventoryCollectorRealTest, UdevAndSysfsEnumerationAgree) {
  InventoryCollector with_udev("/sys");
  InventoryCollector with_sysfs("/sys/.");  // any other spelling of the root lists sysfs
  EXPECT_FALSE(with_sysfs.uses_udev());
  if (!with_udev.uses_udev()) GTEST_SKIP() << "libudev cannot start here";
  const auto a = with_udev.collect();
  const auto b = with_sysfs.collect();
  EXPECT_TRUE(a.inventory.block_devices == b.inventory.block_devices);
  EXPECT_TRUE(a.inventory.usb_devices == b.inventory.usb_devices);
  EXPECT_TRUE(a.inventory.displays == b.inventory.displays);
  ASSERT_EQ(a.inventory.nics.size(), b.inventory.nics.size());
  for (std::size_t i = 0; i < a.inventory.nics.size(); ++i) {
    EXPECT_EQ(a.inventory.nics[i].name, b.inventory.nics[i].name);
    EXPECT_EQ(a.inventory.nics[i].mac, b.inventory.nics[i].mac);
    EXPECT_EQ(a.inventory.nics[i].driver, b.inventory.nics[i].driver);
  }
}

}  // namespace
}  // namespace tether::platform
