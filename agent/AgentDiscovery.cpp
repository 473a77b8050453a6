#include "agent/AgentDiscovery.h"

#include <sys/stat.h>

#include <algorithm>
#include <ctime>

#include "agent/DeviceIdentity.h"
#include "agent/SystemInfo.h"
#include "agent/WakeOnLan.h"
#include "common/FileIo.h"
#include "common/Hex.h"
#include "common/Log.h"
#include "common/Version.h"

namespace tether::agent {
namespace {

template <std::size_t N>
bool hex_to_array(const std::string& hex, std::array<std::uint8_t, N>& out) {
  auto bytes = hex_decode(hex);
  if (!bytes.ok() || bytes->size() != N) return false;
  std::copy(bytes->begin(), bytes->end(), out.begin());
  return true;
}

}  // namespace

std::string online_key_path(const StatePaths& paths) {
  return paths.dir + "/online.key";
}

std::string discovery_stats_path(const StatePaths& paths) {
  return paths.dir + "/discovery.json";
}

Result<std::optional<std::string>> load_online_key(const StatePaths& paths) {
  const std::string path = online_key_path(paths);
  if (!file_exists(path)) return std::optional<std::string>{};
  TETHER_TRY(check_private_file(path));
  TETHER_ASSIGN_OR_RETURN(std::string text, read_file(path, 256, true));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.size() != 64 || !is_lower_hex(text)) {
    return make_error(Errc::kBadValue, path + " is corrupt (want 64 hex digits)");
  }
  return std::optional(text);
}

Status save_online_key(const StatePaths& paths, const std::string& hex_key) {
  if (hex_key.size() != 64 || !is_lower_hex(hex_key)) {
    return make_error(Errc::kBadValue, "the online key must be 64 lower-case hex digits");
  }
  return write_file_atomic(online_key_path(paths), hex_key + "\n", 0600);
}

AgentDiscovery::AgentDiscovery(lws_context* ctx, lws_vhost* watch_vhost, const Config& config,
                               StatePaths paths, std::string device_id,
                               std::function<void()> on_enrolled)
    : paths_(std::move(paths)), device_id_(std::move(device_id)) {
  hostname_ = read_hostname();
  unit_id_ = read_unit_id();
  accept_registration_ = config.boolean("discovery.accept_registration");
  enrollment_changed();

  // Wake-on-LAN first: it does not depend on the responder.
  if (config.string("wol.enable") == "magic") {
    const auto outcome = enable_magic_packet_wake(wired_nics("/sys/class/net"));
    for (const auto& nic : outcome.enabled)
      log::info("wake-on-LAN (magic packet) is on for " + nic);
    for (const auto& [nic, why] : outcome.unsupported) {
      log::warning("wake-on-LAN cannot be turned on for " + nic + ": " + why);
    }
    wol_unsupported_ = outcome.unsupported;
  }

  RegistrarOptions ro;
  ro.accept_registration = accept_registration_;
  const std::string mode = config.string("discovery.auto_register");
  ro.auto_register = mode == "off"  ? AutoRegister::kOff
                     : mode == "on" ? AutoRegister::kOn
                                    : AutoRegister::kDns;
  ro.registration_server = config.string("discovery.registration_server");
  if (ro.auto_register == AutoRegister::kOn && ro.registration_server.empty()) {
    log::warning("discovery.auto_register is on but discovery.registration_server is empty");
    ro.auto_register = AutoRegister::kOff;
  }
  registrar_ = std::make_unique<DiscoveryRegistrar>(ctx, paths_, ro, std::move(on_enrolled));
  registrar_->update_auto_registration();

  const auto port = static_cast<std::uint16_t>(config.integer("discovery.port"));
  if (port == 0) {
    log::info("discovery responder off (discovery.port = 0)");
    (void)remove_file(discovery_stats_path(paths_));  // no stale counters in `status`
    return;
  }
  DiscoveryResponderOptions options;
  options.address = config.string("discovery.address");
  options.port = port;
  options.stats_path = discovery_stats_path(paths_);
  options.policy.own_ports = {port, kDiscoveryPort, kRegistrationPort};
  options.policy.allow_loopback = config.boolean("discovery.allow_loopback");
  options.policy.limits.rate_per_source =
      static_cast<double>(config.integer("discovery.rate_per_source"));
  options.policy.limits.burst_per_source =
      static_cast<double>(config.integer("discovery.burst_per_source"));
  options.policy.limits.rate_total = static_cast<double>(config.integer("discovery.rate_total"));
  options.policy.limits.burst_total = static_cast<double>(config.integer("discovery.burst_total"));
  auto networks = parse_ipv4_cidr_list(config.string("discovery.management_networks"));
  if (!networks.ok()) {
    log::error("discovery.management_networks: " + networks.error().message +
               "; the responder answers on-link sources only");
  } else {
    options.policy.management_networks = std::move(networks).value();
  }
  auto responder = DiscoveryResponder::start(ctx, watch_vhost, options, [this] { return self(); });
  if (!responder.ok()) {
    log::warning("discovery responder not started: " + responder.error().message);
    return;
  }
  responder_ = std::move(responder).value();
  DiscoveryTcpOptions tcp;
  tcp.address = options.address;
  tcp.port = port;
  auto listener = DiscoveryTcpListener::start(
      ctx, watch_vhost, tcp, *responder_,
      [this](const protocol::RegisterRequest& request, std::uint32_t source) {
        return registrar_->on_register_request(request, source);
      });
  if (!listener.ok()) {
    log::warning("discovery TCP listener not started: " + listener.error().message);
  } else {
    tcp_ = std::move(listener).value();
  }
  log::info("discovery responder on " + options.address + ":" + std::to_string(port) +
            " (UDP and TCP)");
}

AgentDiscovery::~AgentDiscovery() {
  tcp_.reset();
  responder_.reset();
  registrar_.reset();
}

void AgentDiscovery::enrollment_changed() {
  enrolled_ = false;
  fingerprint_.reset();
  online_key_.clear();
  auto enrollment = load_enrollment(paths_);
  if (enrollment.ok() && *enrollment) {
    enrolled_ = true;
    protocol::Sha256 f{};
    if (hex_to_array((*enrollment)->ca_fingerprint, f)) fingerprint_ = f;
    auto key = load_online_key(paths_);
    if (!key.ok()) {
      log::warning(key.error().message);
    } else if (*key) {
      // A key from before the current enrollment (register --force with another server)
      // belongs to the old server: wait for the new one's HelloAck.
      struct stat st {};
      if (::stat(online_key_path(paths_).c_str(), &st) == 0 &&
          st.st_mtime >= (*enrollment)->enrolled_at) {
        online_key_ = *hex_decode(**key);
      }
    }
  }
  if (registrar_) registrar_->update_auto_registration();
}

void AgentDiscovery::on_hello_ack(const protocol::HelloAck& ack) {
  if (!ack.online_key) return;
  auto key = hex_decode(*ack.online_key);
  if (!key.ok() || key->size() != 32) return;
  if (*key == online_key_) return;
  auto saved = save_online_key(paths_, *ack.online_key);
  if (!saved.ok()) {
    log::warning("cannot store the online-check key: " + saved.error().message);
  }
  online_key_ = std::move(key).value();
  log::debug("online-check key updated");
}

DiscoverySelf AgentDiscovery::self() {
  DiscoverySelf s;
  s.registered = enrolled_;
  if (enrolled_) s.server_fingerprint = fingerprint_.value_or(protocol::Sha256{});
  s.accepts_registration = !enrolled_ && accept_registration_;
  s.hostname = hostname_;
  s.unit_id = unit_id_;
  s.version = kVersion;
  (void)hex_to_array(device_id_, s.online.device_id);
  if (enrolled_) s.online.online_key = online_key_;
  return s;
}

Result<nlohmann::json> AgentDiscovery::wake_peer(const protocol::WakePeer& request) {
  auto ifs = read_local_interfaces();
  if (!ifs.ok()) return ifs.error();
  std::vector<Ipv4Net> subnets;
  for (const auto& i : *ifs) subnets.insert(subnets.end(), i.subnets.begin(), i.subnets.end());
  auto result = wake_peers(request, subnets, broadcast_sender());
  if (result.ok()) {
    log::info("wake_peer: sent " + std::to_string((*result)["sent"].get<std::size_t>()) +
              " magic packet(s) for " + std::to_string(request.targets.size()) + " target(s)");
  }
  return result;
}

std::vector<protocol::Event> AgentDiscovery::channel_events() const {
  std::vector<protocol::Event> out;
  for (const auto& [nic, why] : wol_unsupported_) {
    protocol::Event e;
    e.kind = "wol.unsupported";
    e.severity = protocol::Severity::kWarning;
    e.message = "wake-on-LAN (magic packet) cannot be turned on for " + nic + ": " + why;
    e.time = std::time(nullptr);
    e.data = {{"nic", nic}};
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace tether::agent
