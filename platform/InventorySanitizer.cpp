#include "platform/InventorySanitizer.h"

#include <algorithm>
#include <functional>

#include "common/Utf8.h"
#include "protocol/JsonFieldReader.h"
#include "protocol/MacAddress.h"

namespace tether::platform {
namespace {

using json = nlohmann::json;
using protocol::Inventory;

bool is_space_control(unsigned char c) {
  return c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::size_t count_values(const json& j) {
  std::size_t n = 1;
  if (j.is_structured()) {
    for (const auto& child : j) n += count_values(child);
  }
  return n;
}

// What one more list item costs in the serialized message: its text plus a comma, and its
// JSON values (the UP parser counts every value, containers included, not keys).
struct Cost {
  std::size_t bytes = 0;
  std::size_t values = 0;
};

Cost cost_of(const json& item) {
  return {item.dump(-1, ' ', false, json::error_handler_t::replace).size() + 1, count_values(item)};
}

// Room left for the envelope around the body: {"v":1,"type":"inventory","id":"<≤64>",...}.
constexpr std::size_t kEnvelopeBytes = 1024;
constexpr std::size_t kEnvelopeValues = 16;

template <typename T>
void cap_list(std::vector<T>& list, std::size_t max, std::string_view what,
              std::vector<std::string>& warnings) {
  if (list.size() <= max) return;
  warnings.push_back(std::to_string(list.size() - max) + " " + std::string(what) +
                     " left out: the inventory carries at most " + std::to_string(max));
  list.resize(max);
}

std::vector<std::string> clean_list(const std::vector<std::string>& in, std::size_t max_items,
                                    std::size_t max_len) {
  std::vector<std::string> out;
  for (const auto& s : in) {
    if (out.size() == max_items) break;
    std::string c = clean_text(s, max_len);
    if (!c.empty()) out.push_back(std::move(c));
  }
  return out;
}

// Each known letter once, in ethtool's order; anything else is dropped.
std::string clean_wol(std::string_view letters) {
  std::string out;
  for (char c : std::string_view("pumbagsfd")) {
    if (letters.find(c) != std::string_view::npos) out.push_back(c);
  }
  return out;
}

bool valid_usb_id(const std::string& id) {
  return !id.empty() && id.size() <= InventoryLimits::kUsbId &&
         protocol::string_is_kind(id, protocol::StringKind::kToken);
}

// Keeps the leading items of `list` that still fit the budget; the rest are left out.
template <typename T>
void fit_list(std::vector<T>& list, const std::function<json(const T&)>& encode,
              std::string_view what, Cost& used, const Cost& budget,
              std::vector<std::string>& warnings) {
  std::size_t keep = 0;
  for (; keep < list.size(); ++keep) {
    const Cost c = cost_of(encode(list[keep]));
    if (used.bytes + c.bytes > budget.bytes || used.values + c.values > budget.values) break;
    used.bytes += c.bytes;
    used.values += c.values;
  }
  if (keep == list.size()) return;
  warnings.push_back(std::to_string(list.size() - keep) + " " + std::string(what) +
                     " left out to keep the inventory message within " +
                     std::to_string(budget.bytes) + " bytes and " + std::to_string(budget.values) +
                     " values");
  list.resize(keep);
}

// The JSON of one list item exactly as encode_body writes it.
template <typename T>
json encoded_item(std::vector<T> Inventory::*member, const char* key, const T& item) {
  Inventory one;
  (one.*member).push_back(item);
  json body = protocol::encode_body(protocol::UpBody{std::move(one)});
  return std::move(body[key][0]);
}

}  // namespace

std::string clean_text(std::string_view raw, std::size_t max_bytes) {
  std::string out;
  out.reserve(std::min(raw.size(), max_bytes + 4));
  std::size_t i = 0;
  // Stop early: a megabyte of junk needs no more than the bytes that can be kept.
  while (i < raw.size() && out.size() <= max_bytes + 4) {
    const auto c = static_cast<unsigned char>(raw[i]);
    if (c < 0x80) {
      char keep = static_cast<char>(c);
      if (c < 0x20 || c == 0x7f) keep = is_space_control(c) ? ' ' : '?';
      if (!(keep == ' ' && out.empty())) out.push_back(keep);
      ++i;
      continue;
    }
    const std::size_t len = utf8_sequence_length(raw, i);
    if (len == 0) {
      out.push_back('?');
      ++i;
      continue;
    }
    // U+0080..U+009F (C1 controls) are two bytes, C2 80..C2 9F.
    if (len == 2 && c == 0xc2 && static_cast<unsigned char>(raw[i + 1]) < 0xa0) {
      out.push_back('?');
    } else {
      out.append(raw.substr(i, len));
    }
    i += len;
  }
  if (out.size() > max_bytes) {
    std::size_t cut = max_bytes;
    // Never split a character: back up over continuation bytes to the start of the one cut.
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xc0) == 0x80) --cut;
    out.resize(cut);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

void sanitize_inventory(Inventory& inv, std::vector<std::string>& warnings) {
  using L = InventoryLimits;
  inv.cpu_model = clean_text(inv.cpu_model, L::kCpuModel);
  inv.cpu_count = std::clamp<std::int64_t>(inv.cpu_count, 0, L::kCpuCount);
  inv.memory_kb = std::clamp<std::int64_t>(inv.memory_kb, 0, L::kBytes);

  cap_list(inv.nics, L::kNics, "network interfaces", warnings);
  for (auto& n : inv.nics) {
    n.name = clean_text(n.name, L::kNicName);
    if (!n.mac.empty()) {
      auto mac = protocol::MacAddress::parse(n.mac);
      n.mac = mac.ok() ? mac->to_string() : std::string();
    }
    n.driver = clean_text(n.driver, L::kDriver);
    if (n.speed_mbps && (*n.speed_mbps < 0 || *n.speed_mbps > L::kSpeedMbps)) n.speed_mbps.reset();
    n.addresses = clean_list(n.addresses, L::kAddresses, L::kAddress);
    n.wol_supported = clean_wol(n.wol_supported);
    n.wol_enabled = clean_wol(n.wol_enabled);
  }

  cap_list(inv.block_devices, L::kBlockDevices, "block devices", warnings);
  for (auto& b : inv.block_devices) {
    b.name = clean_text(b.name, L::kBlockName);
    b.model = clean_text(b.model, L::kModel);
    b.size_bytes = std::clamp<std::int64_t>(b.size_bytes, 0, L::kBytes);
  }

  const std::size_t usb_before = inv.usb_devices.size();
  std::erase_if(inv.usb_devices, [](const protocol::UsbDeviceInfo& u) {
    return !valid_usb_id(u.vendor_id) || !valid_usb_id(u.product_id);
  });
  if (inv.usb_devices.size() != usb_before) {
    warnings.push_back(std::to_string(usb_before - inv.usb_devices.size()) +
                       " USB devices left out: vendor or product id is not 4 hex digits");
  }
  cap_list(inv.usb_devices, L::kUsbDevices, "USB devices", warnings);
  for (auto& u : inv.usb_devices) {
    u.manufacturer = clean_text(u.manufacturer, L::kUsbString);
    u.product = clean_text(u.product, L::kUsbString);
    u.serial = clean_text(u.serial, L::kUsbString);
  }

  cap_list(inv.displays, L::kDisplays, "displays", warnings);
  for (auto& d : inv.displays) {
    d.connector = clean_text(d.connector, L::kConnector);
    d.modes = clean_list(d.modes, L::kModes, L::kMode);
  }

  // Every item is valid now; what remains is the size of the whole message. Network
  // interfaces matter most (wake-on-LAN and addressing need them), then displays, disks and
  // USB devices.
  const protocol::JsonLimits limits = protocol::up_json_limits();
  const Cost budget{limits.max_bytes - kEnvelopeBytes, limits.max_values - kEnvelopeValues};
  Inventory scalars;
  scalars.cpu_model = inv.cpu_model;
  scalars.cpu_count = inv.cpu_count;
  scalars.memory_kb = inv.memory_kb;
  Cost used = cost_of(protocol::encode_body(protocol::UpBody{scalars}));
  fit_list<protocol::NicInfo>(
      inv.nics, [](const auto& n) { return encoded_item(&Inventory::nics, "nics", n); },
      "network interfaces", used, budget, warnings);
  fit_list<protocol::DisplayInfo>(
      inv.displays, [](const auto& d) { return encoded_item(&Inventory::displays, "displays", d); },
      "displays", used, budget, warnings);
  fit_list<protocol::BlockDeviceInfo>(
      inv.block_devices,
      [](const auto& b) { return encoded_item(&Inventory::block_devices, "block_devices", b); },
      "block devices", used, budget, warnings);
  fit_list<protocol::UsbDeviceInfo>(
      inv.usb_devices,
      [](const auto& u) { return encoded_item(&Inventory::usb_devices, "usb_devices", u); },
      "USB devices", used, budget, warnings);
}

}  // namespace tether::platform
