#include "server/OnlineChecker.h"

#include <algorithm>
#include <ctime>

#include "common/Hex.h"
#include "common/Log.h"
#include "server/Ipv4Subnet.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
constexpr std::size_t kProbeSize = 128;
constexpr std::size_t kMaxAddressesPerDevice = 8;

std::int64_t unix_now() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

}  // namespace

std::vector<Ipv4Address> device_probe_addresses(const DeviceRecord& device) {
  std::vector<Ipv4Address> out;
  auto add = [&](Ipv4Address a) {
    if (a != 0 && (a >> 24) != 127 && std::find(out.begin(), out.end(), a) == out.end() &&
        out.size() < kMaxAddressesPerDevice) {
      out.push_back(a);
    }
  };
  if (auto a = ipv4_of_peer(device.address)) add(*a);
  for (const auto& s : inventory_subnets(device.inventory_json)) add(s.address);
  return out;
}

struct OnlineChecker::Probe {
  std::string id;
  std::uint64_t nonce = 0;
  std::vector<std::uint8_t> key;
  protocol::Sha256 device_id{};
  std::vector<std::string> addresses;
  bool settled = false;
  bool online = false;
  std::string source;  // "up", "udp"
  std::string answered_from;
  int forged = 0;
  std::string message;
};

struct OnlineChecker::Check {
  std::vector<Probe> probes;
  Done done;
  bool background = false;
  bool finished = false;
  std::unique_ptr<LwsTimer> timeout;
};

OnlineChecker::OnlineChecker(lws_context* context, DatagramSocket& socket, Store& store,
                             LiveDevices& live, std::uint16_t device_port,
                             std::chrono::seconds background_interval)
    : context_(context),
      socket_(socket),
      store_(store),
      live_(live),
      device_port_(device_port),
      background_interval_(background_interval),
      reaper_(std::make_unique<LwsTimer>(context, [this] { reap(); })) {
  if (background_interval_.count() > 0) {
    background_ = std::make_unique<LwsTimer>(context, [this] { background_round(); });
    background_->schedule(background_interval_);
  }
}

OnlineChecker::~OnlineChecker() {
  for (auto& check : checks_) {
    for (auto& p : check->probes) socket_.forget(p.nonce);
  }
}

std::int64_t OnlineChecker::last_seen_udp(const std::string& id) const {
  auto it = last_seen_udp_.find(id);
  return it == last_seen_udp_.end() ? 0 : it->second;
}

void OnlineChecker::check(const std::vector<std::string>& ids, std::chrono::milliseconds timeout,
                          Done done) {
  auto check = std::make_unique<Check>();
  check->done = std::move(done);
  Check* raw = check.get();
  const auto timestamp = static_cast<std::uint64_t>(unix_now());
  for (const auto& id : ids) {
    Probe& p = check->probes.emplace_back();
    p.id = id;
    auto found = store_.find_device(id);
    if (!found.ok() || !*found || (*found)->deleted) {
      p.settled = true;
      p.message = found.ok() ? "no such device" : found.error().message;
      continue;
    }
    const DeviceRecord& device = **found;
    if (device.revoked) {
      p.settled = true;
      p.message = "revoked";
      continue;
    }
    if (live_.live_state(id)) {
      p.settled = p.online = true;
      p.source = "up";
      p.message = "UP channel is up";
      continue;
    }
    auto key = hex_decode(device.online_key);
    auto device_id = hex_decode(id);
    const auto addresses = device_probe_addresses(device);
    if (!key.ok() || !device_id.ok() || device_id->size() != p.device_id.size()) {
      p.settled = true;
      p.message = "no online key for this device";
      continue;
    }
    if (addresses.empty()) {
      p.settled = true;
      p.message = "no known IPv4 address to probe";
      continue;
    }
    p.key = std::move(*key);
    std::copy(device_id->begin(), device_id->end(), p.device_id.begin());
    p.nonce = random_nonce();
    protocol::OnlineProbe probe;
    probe.nonce = p.nonce;
    probe.reply_port = socket_.port();
    probe.device_id = p.device_id;
    probe.timestamp = timestamp;
    // Unpadded, an authenticated probe is 93 bytes; padding keeps any reply within it.
    probe.padding = static_cast<std::uint16_t>(kProbeSize - 93);
    auto encoded = protocol::encode_online_probe(probe, p.key);
    if (!encoded.ok()) {
      p.settled = true;
      p.message = encoded.error().message;
      continue;
    }
    const std::size_t index = check->probes.size() - 1;
    socket_.expect(p.nonce, [this, raw, index](const DatagramSocket::Received& r) {
      Probe& entry = raw->probes[index];
      const auto* reply = std::get_if<protocol::OnlineReply>(&r.datagram);
      if (raw->finished || entry.settled || reply == nullptr) return;
      const bool verified =
          reply->device_id == entry.device_id && reply->authenticator && r.size <= kProbeSize &&
          protocol::verify_authenticator(entry.key, reply->signed_bytes, *reply->authenticator);
      if (!verified) {
        ++entry.forged;
        log::warning("online check of " + entry.id.substr(0, 12) + ": forged reply from " +
                     ipv4_to_string(r.from) + " ignored (authenticator does not verify)");
        return;
      }
      entry.settled = true;
      entry.online = reply->online;
      entry.source = "udp";
      entry.answered_from = ipv4_to_string(r.from);
      entry.message = reply->online ? "answered the online probe" : "answered: not online";
      complete_if_settled(*raw);
    });
    for (Ipv4Address a : addresses) {
      p.addresses.push_back(ipv4_to_string(a));
      if (auto sent = socket_.send_to(a, device_port_, *encoded); !sent.ok()) {
        log::debug("online check: " + sent.error().message);
      }
    }
  }
  check->timeout = std::make_unique<LwsTimer>(context_, [this, raw] { complete(*raw); });
  checks_.push_back(std::move(check));
  raw->timeout->schedule(timeout);
  complete_if_settled(*raw);
}

void OnlineChecker::complete_if_settled(Check& check) {
  if (std::all_of(check.probes.begin(), check.probes.end(),
                  [](const Probe& p) { return p.settled; })) {
    complete(check);
  }
}

void OnlineChecker::complete(Check& check) {
  if (check.finished) return;
  check.finished = true;
  check.timeout->cancel();
  json results = json::array();
  const std::int64_t now = unix_now();
  for (auto& p : check.probes) {
    if (p.nonce != 0) socket_.forget(p.nonce);
    if (!p.settled) {
      p.message = p.forged > 0 ? "no valid answer (forged reply ignored)" : "no answer in time";
    }
    if (p.online && p.source == "udp") last_seen_udp_[p.id] = now;
    json r = {{"id", p.id},
              {"online", p.online},
              {"source", p.source.empty() ? json(nullptr) : json(p.source)},
              {"probed", p.addresses},
              {"answered_from", p.answered_from.empty() ? json(nullptr) : json(p.answered_from)},
              {"forged_replies", p.forged},
              {"message", p.message}};
    results.push_back(std::move(r));
  }
  Done done = std::move(check.done);
  // Moved to the reaper: this may run inside the check's own timer or a socket callback.
  for (auto it = checks_.begin(); it != checks_.end(); ++it) {
    if (it->get() == &check) {
      finished_.splice(finished_.end(), checks_, it);
      break;
    }
  }
  if (!reaper_->pending()) reaper_->schedule(std::chrono::milliseconds(1));
  if (done) done(std::move(results));
}

void OnlineChecker::reap() {
  finished_.clear();
}

void OnlineChecker::background_round() {
  std::vector<std::string> ids;
  if (auto devices = store_.list_devices(); devices.ok()) {
    std::vector<std::string> all;
    all.reserve(devices->size());
    for (const auto& d : *devices) all.push_back(d.id);
    // One look for all (with several instances, one query rather than one per device).
    const auto online = live_.live_states(all);
    for (const auto& d : *devices) {
      if (!d.revoked && online.count(d.id) == 0) ids.push_back(d.id);
    }
  }
  if (!ids.empty()) {
    check(ids, std::chrono::seconds(1), [](const json& results) {
      int online = 0;
      for (const auto& r : results) online += r.value("online", false);
      log::debug("background online check: " + std::to_string(online) + " of " +
                 std::to_string(results.size()) + " device(s) without a channel answered");
    });
  }
  background_->schedule(background_interval_);
}

}  // namespace tether::server
