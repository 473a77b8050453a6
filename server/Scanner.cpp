#include "server/Scanner.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <ctime>

#include "common/Hex.h"
#include "common/Log.h"
#include "server/EnrollmentService.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Probes are padded to this size so that any reply fits (docs/protocol.md §3.1).
constexpr std::size_t kProbeSize = 512;
constexpr std::size_t kMaxRunningJobs = 4;
constexpr std::size_t kKeptJobs = 16;
constexpr auto kTick = 20ms;
constexpr auto kWaitTick = 100ms;

std::uint16_t padding_for(std::size_t unpadded) {
  return static_cast<std::uint16_t>(kProbeSize > unpadded ? kProbeSize - unpadded : 0);
}

std::vector<std::uint8_t> scan_probe(std::uint64_t nonce, std::uint16_t reply_port) {
  protocol::ScanProbe probe;
  probe.nonce = nonce;
  probe.reply_port = reply_port;
  probe.padding = padding_for(protocol::kDiscoveryHeaderSize + 4);
  auto encoded = protocol::encode_scan_probe(probe);
  return encoded.ok() ? *encoded : std::vector<std::uint8_t>{};
}

const char* register_status_name(protocol::RegisterStatus status) {
  switch (status) {
    case protocol::RegisterStatus::kAccepted: return "accepted";
    case protocol::RegisterStatus::kAlreadyRegistered: return "already_registered";
    case protocol::RegisterStatus::kRegisteredElsewhere: return "registered_elsewhere";
    case protocol::RegisterStatus::kDisabled: return "disabled";
    case protocol::RegisterStatus::kBusy: return "busy";
  }
  return "unknown";
}

}  // namespace

std::vector<Ipv4Address> local_broadcast_addresses() {
  std::vector<Ipv4Address> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* ifa = list; ifa != nullptr; ifa = ifa->ifa_next) {
    if (ifa->ifa_addr == nullptr || ifa->ifa_addr->sa_family != AF_INET) continue;
    if ((ifa->ifa_flags & IFF_LOOPBACK) || !(ifa->ifa_flags & IFF_UP) ||
        !(ifa->ifa_flags & IFF_BROADCAST) || ifa->ifa_broadaddr == nullptr) {
      continue;
    }
    const auto* b = reinterpret_cast<const sockaddr_in*>(ifa->ifa_broadaddr);
    const Ipv4Address address = ntohl(b->sin_addr.s_addr);
    if (address != 0 && std::find(out.begin(), out.end(), address) == out.end()) {
      out.push_back(address);
    }
  }
  ::freeifaddrs(list);
  return out;
}

struct Scanner::Found {
  Ipv4Address address = 0;
  protocol::ScanReply reply;
  std::string via;
  std::string device_id;
  // Registration: "" (not asked), requesting, accepted, token_issued, online, timeout,
  // already_registered, registered_elsewhere, disabled, busy, failed.
  std::string registration;
  std::string registration_message;
  std::unique_ptr<TcpExchange> exchange;
};

struct Scanner::Job {
  std::string id;
  ScanRequest request;
  std::uint64_t nonce = 0;
  std::vector<Ipv4Address> targets;
  std::size_t next = 0;
  std::size_t probed = 0;
  std::string phase = "probing";  // probing, waiting, registering, done
  std::string mode;
  SteadyClock::time_point deadline{};
  std::int64_t started_at = 0;
  std::map<Ipv4Address, Found> found;
  std::vector<std::unique_ptr<TcpExchange>> tcp;
  std::size_t replies_too_large = 0;
  std::unique_ptr<LwsTimer> timer;
};

Scanner::Scanner(lws_context* context, lws_vhost* vhost, DatagramSocket& socket, Store& store,
                 LiveDevices& live, PendingRegistrations& pending, ScannerOptions options)
    : context_(context),
      vhost_(vhost),
      socket_(socket),
      store_(store),
      live_(live),
      pending_(pending),
      options_(std::move(options)),
      reaper_(std::make_unique<LwsTimer>(context, [this] { reap(); })) {}

Scanner::~Scanner() {
  for (auto& [id, job] : jobs_) socket_.forget(job->nonce);
}

void Scanner::reap() {
  finished_exchanges_.clear();
}

Result<std::string> Scanner::start(const ScanRequest& request) {
  std::size_t running = 0;
  for (const auto& [id, job] : jobs_) running += job->phase != "done";
  if (running >= kMaxRunningJobs) {
    return make_error(Errc::kUnavailable, "too many scans running; wait for one to finish");
  }
  if (request.tcp && !request.range) {
    return make_error(Errc::kBadValue, "a TCP scan needs a range (--range CIDR)");
  }
  if (request.broadcast && request.range) {
    return make_error(Errc::kBadValue, "give a broadcast address or a range, not both");
  }
  auto job = std::make_unique<Job>();
  TETHER_ASSIGN_OR_RETURN(job->id, random_hex(8));
  job->request = request;
  job->nonce = random_nonce();
  job->started_at = static_cast<std::int64_t>(std::time(nullptr));
  if (request.range) {
    TETHER_ASSIGN_OR_RETURN(job->targets, scan_hosts(*request.range));
    job->mode = request.tcp ? "tcp range " : "udp range ";
    job->mode += request.range->to_string();
  } else if (request.broadcast) {
    job->targets = {*request.broadcast};
    job->mode = "udp broadcast " + ipv4_to_string(*request.broadcast);
  } else {
    job->targets = local_broadcast_addresses();
    if (job->targets.empty()) {
      return make_error(Errc::kUnavailable, "no local interface has an IPv4 broadcast address");
    }
    job->mode = "udp broadcast (local interfaces)";
  }
  Job* raw = job.get();
  job->timer = std::make_unique<LwsTimer>(context_, [this, raw] { tick(*raw); });
  if (!request.tcp) {
    socket_.expect(job->nonce, [this, raw](const DatagramSocket::Received& r) {
      const auto* reply = std::get_if<protocol::ScanReply>(&r.datagram);
      if (reply == nullptr || raw->phase == "done") return;
      if (r.size > kProbeSize) {
        ++raw->replies_too_large;  // never larger than the probe: not a responder of ours
        return;
      }
      record(*raw, r.from, *reply, "udp");
    });
  }
  log::notice("scan " + job->id + ": " + job->mode + " (" + std::to_string(job->targets.size()) +
              " address(es))" + (request.register_devices ? ", registering what it finds" : ""));
  const std::string id = job->id;
  jobs_.emplace(id, std::move(job));
  job_order_.push_back(id);
  while (job_order_.size() > kKeptJobs) {
    auto oldest = std::find_if(job_order_.begin(), job_order_.end(),
                               [&](const std::string& j) { return jobs_.at(j)->phase == "done"; });
    if (oldest == job_order_.end()) break;
    jobs_.erase(*oldest);
    job_order_.erase(oldest);
  }
  raw->timer->schedule(1ms);
  return id;
}

void Scanner::tick(Job& job) {
  const auto now = SteadyClock::now();
  if (job.phase == "probing") {
    if (job.request.tcp) {
      pump_tcp(job);
    } else {
      send_udp_batch(job);
    }
    job.timer->schedule(job.phase == "probing" ? kTick : kWaitTick);
    return;
  }
  if (job.phase == "waiting") {
    if (now < job.deadline) {
      job.timer->schedule(kWaitTick);
      return;
    }
    socket_.forget(job.nonce);
    if (job.request.register_devices) {
      start_registrations(job);
      return;
    }
    finish(job);
    return;
  }
  if (job.phase == "registering") {
    bool waiting = false;
    for (auto& [address, f] : job.found) {
      if (f.registration == "token_issued" && !f.device_id.empty() &&
          live_.live_state(f.device_id)) {
        f.registration = "online";
        f.registration_message = "enrolled and online";
        log::notice("scan " + job.id + ": " + ipv4_to_string(address) + " enrolled as " +
                    f.device_id.substr(0, 12) + " and is online");
      }
      if (f.registration == "requesting" || f.registration == "accepted" ||
          f.registration == "token_issued") {
        waiting = true;
      }
    }
    if (waiting && now < job.deadline) {
      job.timer->schedule(kWaitTick);
      return;
    }
    for (auto& [address, f] : job.found) {
      if (f.registration == "requesting" || f.registration == "accepted" ||
          f.registration == "token_issued") {
        f.registration_message =
            f.registration == "token_issued" ? "took a token but did not come online in time"
            : f.registration == "accepted"   ? "accepted but did not ask for a token in time"
                                             : "did not answer the registration request";
        f.registration = "timeout";
      }
    }
    finish(job);
  }
}

void Scanner::send_udp_batch(Job& job) {
  const auto probe = scan_probe(job.nonce, socket_.port());
  for (std::size_t i = 0; i < options_.udp_probes_per_tick && job.next < job.targets.size(); ++i) {
    const Ipv4Address target = job.targets[job.next++];
    if (auto sent = socket_.send_to(target, options_.device_port, probe); !sent.ok()) {
      log::debug("scan " + job.id + ": " + sent.error().message);
    }
    ++job.probed;
  }
  if (job.next >= job.targets.size()) {
    job.phase = "waiting";
    job.deadline = SteadyClock::now() + job.request.timeout;
  }
}

void Scanner::pump_tcp(Job& job) {
  // Finished exchanges leave the active list (destroyed later, outside their callbacks).
  for (auto it = job.tcp.begin(); it != job.tcp.end();) {
    if ((*it)->finished()) {
      finished_exchanges_.push_back(std::move(*it));
      it = job.tcp.erase(it);
    } else {
      ++it;
    }
  }
  if (!finished_exchanges_.empty() && !reaper_->pending()) reaper_->schedule(1ms);
  Job* raw = &job;
  while (job.tcp.size() < options_.tcp_concurrency && job.next < job.targets.size()) {
    const Ipv4Address target = job.targets[job.next++];
    const std::uint64_t nonce = job.nonce;
    auto exchange = TcpExchange::start(
        context_, vhost_, target, options_.device_port, job.request.timeout,
        [nonce](Ipv4Address) -> Result<std::vector<std::uint8_t>> { return scan_probe(nonce, 0); },
        [this, raw, target, nonce](Result<std::vector<std::uint8_t>> reply) {
          ++raw->probed;
          if (!reply.ok()) return;
          auto decoded = protocol::decode_datagram(*reply);
          if (!decoded.ok()) return;
          const auto* scan = std::get_if<protocol::ScanReply>(&*decoded);
          if (scan != nullptr && scan->nonce == nonce) record(*raw, target, *scan, "tcp");
        });
    if (!exchange.ok()) {
      ++job.probed;
      continue;
    }
    job.tcp.push_back(std::move(*exchange));
  }
  if (job.tcp.empty() && job.next >= job.targets.size()) {
    job.phase = "waiting";
    job.deadline = SteadyClock::now();  // every connection has ended already
  }
}

void Scanner::record(Job& job, Ipv4Address address, const protocol::ScanReply& reply,
                     const char* via) {
  Found& f = job.found[address];
  const bool is_new = f.via.empty();
  f.address = address;
  f.reply = reply;
  f.via = via;
  if (is_new) {
    auto mac = protocol::MacAddress::from_bytes(reply.mac);
    log::info("scan " + job.id + ": found " + ipv4_to_string(address) + " (" +
              (mac.ok() ? mac->to_string() : "no MAC") + ", \"" + reply.hostname + "\", " +
              (reply.registered ? "registered" : "unregistered") + ")");
  }
}

void Scanner::start_registrations(Job& job) {
  job.phase = "registering";
  job.deadline = SteadyClock::now() + job.request.register_wait;
  Job* raw = &job;
  for (auto& [address, f] : job.found) {
    const bool here = f.reply.server_fingerprint == options_.ca_fingerprint;
    if (f.reply.registered) {
      f.registration = here ? "already_registered" : "registered_elsewhere";
      f.registration_message =
          here ? "already registered to this server" : "registered to another server: not asked";
      continue;
    }
    if (!f.reply.accepts_registration) {
      f.registration = "disabled";
      f.registration_message = "the device does not accept registration requests";
      continue;
    }
    auto mac = protocol::MacAddress::from_bytes(f.reply.mac);
    const std::string mac_text = mac.ok() ? mac->to_string() : "";
    pending_.add(ipv4_to_string(address), mac_text,
                 SteadyClock::now() + options_.pending_registration_ttl);
    f.registration = "requesting";
    const auto options = options_;
    const std::uint64_t nonce = random_nonce();
    Found* found = &f;
    auto exchange = TcpExchange::start(
        context_, vhost_, address, options_.device_port, std::chrono::milliseconds(5000),
        [options, nonce](Ipv4Address local) -> Result<std::vector<std::uint8_t>> {
          protocol::RegisterRequest req;
          req.nonce = nonce;
          req.registration_port = options.registration_port;
          req.server_fingerprint = options.ca_fingerprint;
          req.server_host = ipv4_to_string(local);
          req.padding = 128;
          return protocol::encode_register_request(req);
        },
        [raw, found, nonce](Result<std::vector<std::uint8_t>> reply) {
          if (found->registration != "requesting") return;  // a token came first
          if (!reply.ok()) {
            found->registration = "failed";
            found->registration_message = "registration request: " + reply.error().message;
          } else {
            auto decoded = protocol::decode_datagram(*reply);
            const auto* r =
                decoded.ok() ? std::get_if<protocol::RegisterReply>(&*decoded) : nullptr;
            if (r == nullptr || r->nonce != nonce) {
              found->registration = "failed";
              found->registration_message = "the device gave no valid registration reply";
            } else {
              found->registration = register_status_name(r->status);
              found->registration_message =
                  r->status == protocol::RegisterStatus::kAccepted
                      ? "accepted; waiting for its token request"
                      : "refused by the device (" + found->registration + ")";
            }
          }
          log::info("scan " + raw->id + ": registration request to " +
                    ipv4_to_string(found->address) + ": " + found->registration);
        });
    if (!exchange.ok()) {
      f.registration = "failed";
      f.registration_message = exchange.error().message;
      continue;
    }
    f.exchange = std::move(*exchange);
  }
  job.timer->schedule(kWaitTick);
}

void Scanner::on_token_issued(const std::string& device_id, const std::string& address,
                              const std::string& mac) {
  for (auto& [id, job] : jobs_) {
    if (job->phase != "registering") continue;
    for (auto& [a, f] : job->found) {
      auto fmac = protocol::MacAddress::from_bytes(f.reply.mac);
      const bool match = ipv4_to_string(a) == address || (fmac.ok() && fmac->to_string() == mac);
      if (!match || f.registration == "online") continue;
      f.device_id = device_id;
      f.registration = "token_issued";
      f.registration_message = "took a registration token; waiting for it to enroll";
    }
  }
}

void Scanner::finish(Job& job) {
  job.phase = "done";
  socket_.forget(job.nonce);
  for (auto& [address, f] : job.found) {
    if (f.exchange) finished_exchanges_.push_back(std::move(f.exchange));
  }
  for (auto& e : job.tcp) finished_exchanges_.push_back(std::move(e));
  job.tcp.clear();
  if (!finished_exchanges_.empty() && !reaper_->pending()) reaper_->schedule(1ms);
  log::notice("scan " + job.id + " done: " + std::to_string(job.found.size()) + " device(s) found");
}

std::optional<json> Scanner::describe(const std::string& id) const {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  const Job& job = *it->second;
  // Known devices by MAC, so that a registered device found shows its id.
  std::vector<DeviceRecord> devices;
  if (auto list = store_.list_devices(); list.ok()) devices = std::move(*list);
  json found = json::array();
  for (const auto& [address, f] : job.found) {
    auto mac = protocol::MacAddress::from_bytes(f.reply.mac);
    const std::string mac_text = mac.ok() ? mac->to_string() : "";
    std::string device_id = f.device_id;
    if (device_id.empty() && !mac_text.empty()) {
      for (const auto& d : devices) {
        if (std::find(d.macs.begin(), d.macs.end(), mac_text) != d.macs.end()) device_id = d.id;
      }
    }
    json entry = {
        {"address", ipv4_to_string(address)},
        {"mac", mac_text},
        {"hostname", f.reply.hostname},
        {"unit_id", f.reply.unit_id},
        {"product", f.reply.product},
        {"version", f.reply.version},
        {"registered", f.reply.registered},
        {"registered_here",
         f.reply.registered && f.reply.server_fingerprint == options_.ca_fingerprint},
        {"accepts_registration", f.reply.accepts_registration},
        {"device_id", device_id.empty() ? json(nullptr) : json(device_id)},
        {"found_by", f.via},
    };
    if (job.request.register_devices) {
      entry["registration"] = {{"status", f.registration.empty() ? "pending" : f.registration},
                               {"message", f.registration_message}};
    }
    found.push_back(std::move(entry));
  }
  return json{{"id", job.id},
              {"mode", job.mode},
              {"state", job.phase == "done" ? "done" : "running"},
              {"phase", job.phase},
              {"started_at", job.started_at},
              {"probed", job.probed},
              {"total", job.targets.size()},
              {"devices", std::move(found)}};
}

}  // namespace tether::server
