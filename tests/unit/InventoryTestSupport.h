// Helpers for the inventory tests: a fake sysfs/proc tree in a temporary directory, NicQueries
// with canned answers, and the protocol round trip every inventory must survive.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "TempDir.h"
#include "platform/InventoryCollector.h"
#include "platform/NicQueries.h"
#include "protocol/UpMessage.h"

namespace tether::testing {

// A fake tree: <root>/sys and <root>/proc, filled by the test.
class FakeTree {
 public:
  FakeTree() {
    std::filesystem::create_directories(sys());
    std::filesystem::create_directories(proc());
  }
  [[nodiscard]] std::string sys() const { return dir_ / "sys"; }
  [[nodiscard]] std::string proc() const { return dir_ / "proc"; }

  // Writes <root>/<rel> (relative to the temp dir), creating directories.
  void file(const std::string& rel, std::string_view content) const {
    const std::string full = dir_ / rel;
    std::filesystem::create_directories(std::filesystem::path(full).parent_path());
    (void)dir_.write(rel, content);
  }
  void dir(const std::string& rel) const { std::filesystem::create_directories(dir_ / rel); }
  void symlink(const std::string& target, const std::string& rel) const {
    const std::string full = dir_ / rel;
    std::filesystem::create_directories(std::filesystem::path(full).parent_path());
    std::filesystem::create_symlink(target, full);
  }

  // A network interface under sys/class/net/<name>; `driver` non-empty makes it a hardware
  // NIC (device/driver link).
  void nic(const std::string& name, const std::string& address, const std::string& operstate,
           int ifindex, const std::string& driver = "", const std::string& carrier = "",
           const std::string& speed = "") const {
    const std::string base = "sys/class/net/" + name + "/";
    file(base + "address", address + "\n");
    if (!operstate.empty()) file(base + "operstate", operstate + "\n");
    file(base + "ifindex", std::to_string(ifindex) + "\n");
    if (!carrier.empty()) file(base + "carrier", carrier + "\n");
    if (!speed.empty()) file(base + "speed", speed + "\n");
    if (!driver.empty()) {
      dir(base + "device");
      symlink("../../../../bus/pci/drivers/" + driver, base + "device/driver");
    }
  }

 private:
  TempDir dir_;
};

class FakeNicQueries final : public platform::NicQueries {
 public:
  std::map<std::string, std::vector<std::string>> address_map;
  std::optional<Error> address_error;
  std::map<std::string, platform::WakeOnLanModes> wol;
  std::map<std::string, Error> wol_errors;
  std::map<std::string, std::string> drivers;

  Result<std::map<std::string, std::vector<std::string>>> addresses() override {
    if (address_error) return *address_error;
    return address_map;
  }
  Result<platform::WakeOnLanModes> wake_on_lan(const std::string& ifname) override {
    if (auto it = wol_errors.find(ifname); it != wol_errors.end()) return it->second;
    if (auto it = wol.find(ifname); it != wol.end()) return it->second;
    return platform::WakeOnLanModes{};
  }
  std::string driver_name(const std::string& ifname) override {
    auto it = drivers.find(ifname);
    return it == drivers.end() ? std::string() : it->second;
  }
};

// Encodes the inventory as the agent sends it (with the longest id allowed) and decodes it
// as the server does; fails the test unless it comes back equal. Returns the message size.
inline std::size_t expect_round_trip(const protocol::Inventory& inventory) {
  const std::string id(protocol::kMaxMessageIdLength, 'i');
  const std::string text =
      protocol::serialize_envelope(protocol::make_message(id, protocol::UpBody{inventory}));
  auto envelope = protocol::parse_envelope(text);
  if (!envelope.ok()) {
    ADD_FAILURE() << "parse_envelope: " << envelope.error().message;
    return text.size();
  }
  auto body = protocol::decode_body(*envelope);
  if (!body.ok()) {
    ADD_FAILURE() << "decode_body: " << body.error().message;
    return text.size();
  }
  const auto* decoded = std::get_if<protocol::Inventory>(&*body);
  if (decoded == nullptr) {
    ADD_FAILURE() << "decoded to another type";
  } else {
    EXPECT_TRUE(*decoded == inventory) << "the inventory changed in the round trip";
  }
  return text.size();
}

}  // namespace tether::testing
