#include "server/WakeService.h"

#include <algorithm>

#include "common/Log.h"
#include "protocol/MacAddress.h"
#include "protocol/UpMessage.h"
#include "protocol/WakeOnLanPacket.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
constexpr std::uint16_t kWakePorts[] = {9, 7};
constexpr auto kPoll = std::chrono::milliseconds(100);

void add_unique(std::vector<Ipv4Address>& list, Ipv4Address a) {
  if (std::find(list.begin(), list.end(), a) == list.end()) list.push_back(a);
}

}  // namespace

WakePlan plan_wake(const DeviceRecord& target, const std::vector<DeviceRecord>& online_peers) {
  WakePlan plan;
  std::vector<std::string> candidates = target.macs;
  for (auto& m : inventory_macs(target.inventory_json)) candidates.push_back(std::move(m));
  for (const auto& text : candidates) {
    auto mac = protocol::MacAddress::parse(text);
    if (!mac.ok()) {
      plan.problems.push_back("refused MAC \"" + text.substr(0, 32) + "\": " + mac.error().message);
      continue;
    }
    if (std::find(plan.macs.begin(), plan.macs.end(), mac->to_string()) == plan.macs.end()) {
      plan.macs.push_back(mac->to_string());
    }
  }
  for (const auto& s : inventory_subnets(target.inventory_json)) {
    if (s.subnet.prefix >= 31 || s.subnet.prefix < 8) {
      plan.problems.push_back("subnet " + s.subnet.to_string() + " refused (no usable broadcast)");
      continue;
    }
    if (std::find(plan.subnets.begin(), plan.subnets.end(), s.subnet) == plan.subnets.end()) {
      plan.subnets.push_back(s.subnet);
    }
  }
  if (plan.macs.empty()) {
    plan.refusal = "no valid MAC address known for this device";
    return plan;
  }
  if (plan.subnets.empty()) {
    plan.refusal = "no known subnet for this device (its inventory has no IPv4 address)";
    return plan;
  }
  if (auto last = ipv4_of_peer(target.address)) {
    const bool known = std::any_of(plan.subnets.begin(), plan.subnets.end(),
                                   [&](const Ipv4Subnet& s) { return s.contains(*last); });
    if (known) {
      add_unique(plan.server_targets, *last);
    } else {
      plan.problems.push_back("last known address " + ipv4_to_string(*last) +
                              " is outside the device's known subnets: not sent there");
    }
  }
  for (const auto& s : plan.subnets) add_unique(plan.server_targets, s.broadcast());
  for (const auto& s : plan.subnets) {
    const DeviceRecord* relay = nullptr;
    for (const auto& peer : online_peers) {
      if (peer.id == target.id || peer.revoked) continue;
      const auto peer_subnets = inventory_subnets(peer.inventory_json);
      const bool inside =
          std::any_of(peer_subnets.begin(), peer_subnets.end(),
                      [&](const InventorySubnet& p) { return s.contains(p.address); });
      if (inside) {
        relay = &peer;
        break;
      }
    }
    if (relay == nullptr) {
      plan.no_relay.push_back("no agent online in " + s.to_string());
    } else {
      plan.relays.push_back({relay->id, relay->hostname, s});
    }
  }
  return plan;
}

std::chrono::milliseconds wake_offset(std::size_t index, double rate) noexcept {
  if (rate <= 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(
      static_cast<std::int64_t>(static_cast<double>(index) * 1000.0 / rate));
}

struct WakeService::Target {
  std::string id;
  std::string hostname;
  SteadyClock::time_point due{};
  SteadyClock::time_point deadline{};
  bool started = false;
  bool done = false;
  bool came_online = false;
  bool already_online = false;
  std::string error;
  WakePlan plan;
  json sent = json::array();
  std::vector<std::shared_ptr<json>> relay_status;  // filled by the relays' answers
};

struct WakeService::Job {
  std::vector<Target> targets;
  std::chrono::milliseconds wait{0};
  Done done;
  bool finished = false;
  std::unique_ptr<LwsTimer> timer;
};

WakeService::WakeService(lws_context* context, DatagramSocket& socket, Store& store,
                         LiveDevices& live, double rate_per_second)
    : context_(context),
      socket_(socket),
      store_(store),
      live_(live),
      rate_(rate_per_second),
      reaper_(std::make_unique<LwsTimer>(context, [this] { reap(); })) {}

WakeService::~WakeService() = default;

void WakeService::reap() {
  finished_.clear();
}

void WakeService::wake(const std::vector<std::string>& ids, std::chrono::milliseconds wait,
                       Done done) {
  auto job = std::make_unique<Job>();
  job->wait = wait;
  job->done = std::move(done);
  const auto now = SteadyClock::now();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    Target& t = job->targets.emplace_back();
    t.id = ids[i];
    t.due = now + wake_offset(i, rate_);
  }
  Job* raw = job.get();
  job->timer = std::make_unique<LwsTimer>(context_, [this, raw] { tick(*raw); });
  jobs_.push_back(std::move(job));
  tick(*raw);
}

void WakeService::send(Job& job, Target& t) {
  t.started = true;
  t.deadline = SteadyClock::now() + job.wait;
  auto found = store_.find_device(t.id);
  if (!found.ok() || !*found || (*found)->deleted) {
    t.error = found.ok() ? "no such device" : found.error().message;
    t.done = true;
    return;
  }
  const DeviceRecord& device = **found;
  t.hostname = device.hostname;
  if (live_.live_state(t.id)) {
    t.already_online = t.came_online = true;
    t.done = true;
    return;
  }
  std::vector<DeviceRecord> peers;
  if (auto all = store_.list_devices(); all.ok()) {
    std::vector<std::string> ids;
    ids.reserve(all->size());
    for (const auto& d : *all) ids.push_back(d.id);
    // One look for all (with several instances, one query rather than one per device).
    const auto online = live_.live_states(ids);
    for (auto& d : *all) {
      if (d.id != t.id && online.count(d.id) != 0) peers.push_back(std::move(d));
    }
  }
  t.plan = plan_wake(device, peers);
  if (!t.plan.refusal.empty()) {
    t.error = t.plan.refusal;
    t.done = true;
    log::notice("wake " + t.id.substr(0, 12) + " refused: " + t.error);
    return;
  }
  json to = json::array();
  for (const auto& mac_text : t.plan.macs) {
    auto mac = protocol::MacAddress::parse(mac_text);
    auto packet = mac.ok() ? protocol::build_magic_packet(*mac)
                           : Result<std::vector<std::uint8_t>>(mac.error());
    if (!packet.ok()) continue;
    for (Ipv4Address a : t.plan.server_targets) {
      for (std::uint16_t port : kWakePorts) {
        if (auto sent = socket_.send_to(a, port, *packet); !sent.ok()) {
          t.plan.problems.push_back(sent.error().message);
          continue;
        }
        const std::string where = ipv4_to_string(a) + ":" + std::to_string(port);
        if (std::find(to.begin(), to.end(), where) == to.end()) to.push_back(where);
      }
    }
  }
  t.sent.push_back({{"by", "server"}, {"macs", t.plan.macs}, {"to", to}});
  for (const auto& relay : t.plan.relays) {
    protocol::WakePeer body;
    for (const auto& mac : t.plan.macs) {
      body.targets.push_back({mac, ipv4_to_string(relay.subnet.broadcast())});
    }
    body.ports = {9, 7};
    auto status = std::make_shared<json>(
        json{{"by", "device " + relay.device_id + " (" + relay.hostname + ")"},
             {"device_id", relay.device_id},
             {"subnet", relay.subnet.to_string()},
             {"to", ipv4_to_string(relay.subnet.broadcast()) + ":9,7"},
             {"status", "asked"}});
    t.relay_status.push_back(status);
    live_.request(relay.device_id, body, [status](Result<protocol::ResultBody> result) {
      if (!result.ok()) {
        (*status)["status"] = "failed: " + result.error().message;
      } else if (!result->ok) {
        (*status)["status"] =
            "refused: " + (result->error ? result->error->message : std::string("no reason"));
      } else {
        (*status)["status"] = "sent";
      }
    });
  }
  log::notice("wake " + t.id.substr(0, 12) + " (" + t.hostname + "): magic packets to " +
              to.dump() +
              (t.plan.relays.empty()
                   ? ""
                   : ", relayed by " + std::to_string(t.plan.relays.size()) + " agent(s)"));
}

void WakeService::tick(Job& job) {
  const auto now = SteadyClock::now();
  bool all_done = true;
  for (auto& t : job.targets) {
    if (!t.started && now >= t.due) send(job, t);
    if (t.started && !t.done) {
      if (live_.live_state(t.id)) {
        t.came_online = true;
        t.done = true;
      } else if (now >= t.deadline) {
        t.done = true;
      }
    }
    all_done = all_done && t.done;
  }
  if (!all_done) {
    job.timer->schedule(kPoll);
    return;
  }
  job.finished = true;
  json results = json::array();
  for (auto& t : job.targets) {
    json sent = t.sent;
    for (const auto& r : t.relay_status) sent.push_back(*r);
    json problems = t.plan.problems;
    for (const auto& n : t.plan.no_relay) problems.push_back(n);
    std::string message;
    if (!t.error.empty()) {
      message = t.error;
    } else if (t.already_online) {
      message = "already online (UP channel is up): nothing sent";
    } else {
      message = t.came_online ? "came online" : "did not come online within the wait";
    }
    results.push_back({{"id", t.id},
                       {"hostname", t.hostname},
                       {"sent", sent},
                       {"problems", problems},
                       {"came_online", t.came_online},
                       {"error", t.error.empty() ? json(nullptr) : json(t.error)},
                       {"message", message}});
  }
  Done done = std::move(job.done);
  for (auto it = jobs_.begin(); it != jobs_.end(); ++it) {
    if (it->get() == &job) {
      finished_.splice(finished_.end(), jobs_, it);
      break;
    }
  }
  if (!reaper_->pending()) reaper_->schedule(std::chrono::milliseconds(1));
  if (done) done(std::move(results));
}

}  // namespace tether::server
