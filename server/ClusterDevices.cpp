#include "server/ClusterDevices.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <exception>
#include <utility>

namespace tether::server {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kOriginRefresh = 5s;
// How long a gather waits for the other instances (listing sessions is interactive).
constexpr auto kGatherTimeout = 3s;
// The mailbox messages' version (docs/protocol.md, "Between server instances").
constexpr int kMailboxVersion = 1;

Errc errc_from_name(const std::string& name) {
  for (int c = 0; c <= static_cast<int>(Errc::kInternal); ++c) {
    if (errc_name(static_cast<Errc>(c)) == name) return static_cast<Errc>(c);
  }
  return Errc::kInternal;
}

std::string short_instance(const std::string& id) {
  return id.substr(0, 8);
}

LiveDeviceState remote_state(const ClusterPresence& where) {
  LiveDeviceState state;
  state.connected_via = where.connected_via;
  if (where.connected_via.rfind("gateway:", 0) == 0) state.gateway = where.connected_via.substr(8);
  state.instance = where.instance_id;
  return state;
}

}  // namespace

std::string web_origin_of(const std::string& public_url) {
  constexpr std::string_view kScheme = "wss://";
  if (public_url.rfind(kScheme, 0) != 0) return {};
  std::string rest = public_url.substr(kScheme.size());
  if (const auto slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
  if (rest.size() > 4 && rest.compare(rest.size() - 4, 4, ":443") == 0)
    rest.resize(rest.size() - 4);
  for (char& c : rest) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return "https://" + rest;
}

ClusterDevices::ClusterDevices(DeviceHub& hub, ClusterBus& bus, ClusterDevicesSettings settings)
    : hub_(hub), bus_(bus), settings_(settings) {}

ClusterDevices::~ClusterDevices() {
  auto gathers = std::move(gathers_);
  gathers_.clear();
  for (auto& [rid, g] : gathers) {
    g.gathered.complete = false;
    g.done(std::move(g.gathered));
  }
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [rid, p] : pending) {
    fail(p, make_error(Errc::kUnavailable, "the server is stopping"));
  }
}

std::optional<ClusterPresence> ClusterDevices::remote_holder(const std::string& id) const {
  auto where = bus_.locate(id);
  if (!where.ok() || !*where || (*where)->instance_id == bus_.instance_id()) return std::nullopt;
  return **where;
}

std::optional<LiveDeviceState> ClusterDevices::live_state(const std::string& id) const {
  if (auto local = hub_.live_state(id)) {
    local->instance = bus_.instance_id();
    return local;
  }
  if (auto where = remote_holder(id)) return remote_state(*where);
  return std::nullopt;
}

std::unordered_map<std::string, LiveDeviceState> ClusterDevices::live_states(
    const std::vector<std::string>& ids) const {
  std::unordered_map<std::string, LiveDeviceState> out;
  bool any_remote = false;
  for (const auto& id : ids) {
    if (auto local = hub_.live_state(id)) {
      local->instance = bus_.instance_id();
      out.emplace(id, std::move(*local));
    } else {
      any_remote = true;
    }
  }
  if (!any_remote) return out;
  // The whole table of the other instances at once: a listing is one round trip.
  auto remote = bus_.remote_presence();
  if (!remote.ok()) return out;
  for (const auto& id : ids) {
    if (out.count(id) != 0) continue;
    if (auto it = remote->find(id); it != remote->end()) out.emplace(id, remote_state(it->second));
  }
  return out;
}

void ClusterDevices::disconnect(const std::string& id, int close_code, const std::string& reason) {
  hub_.disconnect(id, close_code, reason);
  if (auto where = remote_holder(id)) {
    reply(where->instance_id,
          json{{"t", "disconnect"}, {"device", id}, {"code", close_code}, {"reason", reason}});
  }
}

std::uint64_t ClusterDevices::add_pending(Pending pending) {
  const std::uint64_t rid = next_rid_++;
  pending_.emplace(rid, std::move(pending));
  return rid;
}

void ClusterDevices::fail(Pending& pending, const Error& error) {
  ++counters_.forward_failures;
  if (pending.done) pending.done(error);
  if (pending.respond) {
    pending.respond(
        error_response(error.code == Errc::kTimeout ? 504 : 503, error.code, error.message));
  }
}

Status ClusterDevices::post(const std::string& instance, json message) {
  message["v"] = kMailboxVersion;
  return bus_.send(instance, message.dump());
}

void ClusterDevices::reply(const std::string& instance, json message) {
  // A reply that cannot be written is lost; the asking instance times out and says so.
  (void)post(instance, std::move(message));
}

void ClusterDevices::request(const std::string& id, protocol::UpBody body, RequestDone done) {
  if (hub_.live_state(id)) {
    hub_.request(id, std::move(body), std::move(done));
    return;
  }
  auto where = bus_.locate(id);
  if (!where.ok()) {
    done(make_error(Errc::kUnavailable, "cannot find which server instance holds device " +
                                            id.substr(0, 12) + ": " + where.error().message));
    return;
  }
  if (!*where || (*where)->instance_id == bus_.instance_id()) {
    // The hub answers for an offline device (before returning, as LiveDevices promises).
    hub_.request(id, std::move(body), std::move(done));
    return;
  }
  const std::string instance = (*where)->instance_id;
  Pending pending;
  pending.instance = instance;
  pending.done = std::move(done);
  pending.deadline = SteadyClock::now() + settings_.request_timeout + settings_.margin;
  const std::uint64_t rid = add_pending(std::move(pending));
  const json message = {
      {"t", "request"},
      {"rid", rid},
      {"from", bus_.instance_id()},
      {"device", id},
      {"envelope", protocol::serialize_envelope(protocol::make_message("c", body))}};
  ++counters_.forwarded;
  if (auto sent = post(instance, message); !sent.ok()) {
    auto it = pending_.find(rid);
    if (it == pending_.end()) return;
    Pending failed = std::move(it->second);
    pending_.erase(it);
    fail(failed, make_error(Errc::kUnavailable, "cannot pass the request to server instance " +
                                                    short_instance(instance) + ": " +
                                                    sent.error().message));
  }
}

bool ClusterDevices::forward_shadow_start(const ShadowService::StartRequest& request,
                                          HttpRespond& respond) {
  // A start passed on to us is served here even if the device moved on meanwhile: no ping-pong.
  if (serving_peer_ || hub_.live_state(request.device_id)) return false;
  auto where = remote_holder(request.device_id);
  if (!where) return false;
  Pending pending;
  pending.instance = where->instance_id;
  pending.respond = std::move(respond);
  pending.deadline = SteadyClock::now() + settings_.request_timeout + settings_.margin;
  const std::uint64_t rid = add_pending(std::move(pending));
  const json message = {{"t", "shadow_start"},
                        {"rid", rid},
                        {"from", bus_.instance_id()},
                        {"device", request.device_id},
                        {"admin", request.admin},
                        {"view_only", request.view_only},
                        {"monitor", request.monitor},
                        {"viewer", std::string(protocol::viewer_kind_name(request.viewer))}};
  ++counters_.forwarded;
  if (auto sent = post(where->instance_id, message); !sent.ok()) {
    auto it = pending_.find(rid);
    if (it != pending_.end()) {
      Pending failed = std::move(it->second);
      pending_.erase(it);
      fail(failed,
           make_error(Errc::kUnavailable,
                      "cannot pass the shadowing request to server "
                      "instance " +
                          short_instance(where->instance_id) + ": " + sent.error().message));
    }
  }
  return true;
}

bool ClusterDevices::peer_origin(const std::string& origin) const {
  std::string lowered = origin;
  for (char& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& peer : peer_origins_) {
    if (peer == lowered) return true;
  }
  return false;
}

void ClusterDevices::gather(const std::string& what, json args,
                            std::function<void(Gathered)> done) {
  auto instances = bus_.live_instances();
  Gather g;
  g.gathered.complete = instances.ok();
  g.done = std::move(done);
  g.deadline = SteadyClock::now() + kGatherTimeout;
  const std::uint64_t rid = next_rid_++;
  if (instances.ok()) {
    for (const auto& i : *instances) {
      if (i.id == bus_.instance_id()) continue;
      const json message = {{"t", "gather"},
                            {"rid", rid},
                            {"from", bus_.instance_id()},
                            {"what", what},
                            {"args", args}};
      if (post(i.id, message).ok()) {
        g.waiting.push_back(i.id);
      } else {
        g.gathered.complete = false;
      }
    }
  }
  if (g.waiting.empty()) {
    g.done(std::move(g.gathered));
    return;
  }
  gathers_.emplace(rid, std::move(g));
}

void ClusterDevices::on_gathered(std::uint64_t rid, const std::string& from, json value) {
  auto it = gathers_.find(rid);
  if (it == gathers_.end()) return;
  auto& waiting = it->second.waiting;
  const auto who = std::find(waiting.begin(), waiting.end(), from);
  if (who == waiting.end()) return;
  waiting.erase(who);
  it->second.gathered.answers.push_back(std::move(value));
  if (!waiting.empty()) return;
  Gather done = std::move(it->second);
  gathers_.erase(it);
  done.done(std::move(done.gathered));
}

void ClusterDevices::on_presence(const std::string& device_id,
                                 const std::optional<std::string>& via) {
  if (via) {
    bus_.set_present(device_id, *via);
  } else {
    bus_.clear_present(device_id);
  }
}

void ClusterDevices::republish() {
  for (const auto& [id, via] : hub_.online_devices()) bus_.set_present(id, via);
}

void ClusterDevices::serve_request(const std::string& from, std::uint64_t rid,
                                   const std::string& device, const std::string& envelope_text) {
  auto answer = [this, from, rid](Result<protocol::ResultBody> result) {
    json message = {{"t", "result"}, {"rid", rid}};
    if (result.ok()) {
      message["result"] = protocol::encode_body(protocol::UpBody{*result});
    } else {
      message["error"] = {{"code", std::string(errc_name(result.error().code))},
                          {"message", result.error().message}};
    }
    reply(from, std::move(message));
  };
  auto envelope = protocol::parse_envelope(envelope_text);
  if (!envelope.ok()) {
    answer(envelope.error());
    return;
  }
  auto body = protocol::decode_body(*envelope);
  if (!body.ok()) {
    answer(body.error());
    return;
  }
  ++counters_.served_for_peers;
  hub_.request(device, std::move(*body), std::move(answer));
}

void ClusterDevices::serve_shadow_start(const std::string& from, std::uint64_t rid,
                                        ShadowService::StartRequest request) {
  auto answer = [this, from, rid](HttpResponse response) {
    reply(from, json{{"t", "http"},
                     {"rid", rid},
                     {"status", response.status},
                     {"content_type", response.content_type},
                     {"body", response.body}});
  };
  if (!shadow_starter_) {
    answer(error_response(503, Errc::kUnavailable, "this instance does not shadow"));
    return;
  }
  ++counters_.served_for_peers;
  serving_peer_ = true;
  shadow_starter_(request, std::move(answer));
  serving_peer_ = false;
}

void ClusterDevices::on_message(const std::string& text) {
  // Messages come from our own instances through the database; still, nothing malformed may
  // throw out of the loop's callback.
  try {
    const json m = json::parse(text);
    if (!m.is_object() || m.value("v", 0) != kMailboxVersion) {
      ++counters_.forward_failures;  // from an instance of another version: not understood
      return;
    }
    const std::string type = m.value("t", "");
    if (type == "request") {
      serve_request(m.at("from").get<std::string>(), m.at("rid").get<std::uint64_t>(),
                    m.at("device").get<std::string>(), m.at("envelope").get<std::string>());
    } else if (type == "shadow_start") {
      ShadowService::StartRequest request;
      request.device_id = m.at("device").get<std::string>();
      request.admin = m.at("admin").get<std::string>();
      request.view_only = m.at("view_only").get<bool>();
      request.monitor = m.at("monitor").get<std::string>();
      request.viewer = m.at("viewer").get<std::string>() == "external"
                           ? protocol::ViewerKind::kExternal
                           : protocol::ViewerKind::kBrowser;
      // host stays "": the viewer URL names this instance's public_url, where the tunnels meet.
      serve_shadow_start(m.at("from").get<std::string>(), m.at("rid").get<std::uint64_t>(),
                         std::move(request));
    } else if (type == "gather") {
      const json value = local_answer_ ? local_answer_(m.at("what").get<std::string>(),
                                                       m.value("args", json::object()))
                                       : json(nullptr);
      reply(m.at("from").get<std::string>(), json{{"t", "gathered"},
                                                  {"rid", m.at("rid")},
                                                  {"from", bus_.instance_id()},
                                                  {"value", value}});
    } else if (type == "gathered") {
      on_gathered(m.at("rid").get<std::uint64_t>(), m.at("from").get<std::string>(), m.at("value"));
    } else if (type == "disconnect") {
      hub_.disconnect(m.at("device").get<std::string>(), m.at("code").get<int>(),
                      m.at("reason").get<std::string>());
    } else if (type == "result" || type == "http") {
      auto it = pending_.find(m.at("rid").get<std::uint64_t>());
      if (it == pending_.end()) return;  // timed out meanwhile
      Pending pending = std::move(it->second);
      pending_.erase(it);
      if (type == "http" && pending.respond) {
        HttpResponse response;
        response.status = m.at("status").get<int>();
        response.content_type = m.at("content_type").get<std::string>();
        response.body = m.at("body").get<std::string>();
        pending.respond(std::move(response));
      } else if (type == "result" && pending.done) {
        if (m.contains("error")) {
          pending.done(make_error(errc_from_name(m["error"].at("code").get<std::string>()),
                                  m["error"].at("message").get<std::string>()));
        } else {
          protocol::Envelope envelope;
          envelope.type = "result";
          envelope.id = "r";
          envelope.body = m.at("result");
          auto body = protocol::decode_body(envelope);
          if (!body.ok()) {
            pending.done(body.error());
          } else {
            pending.done(std::get<protocol::ResultBody>(std::move(*body)));
          }
        }
      }
    }
  } catch (const std::exception&) {
    ++counters_.forward_failures;
  }
}

void ClusterDevices::tick(SteadyClock::time_point now) {
  std::vector<Pending> expired;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.deadline <= now) {
      expired.push_back(std::move(it->second));
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& p : expired) {
    fail(p, make_error(Errc::kTimeout, "server instance " + short_instance(p.instance) +
                                           ", which holds the device's channel, did not answer"));
  }
  std::vector<Gather> late;
  for (auto it = gathers_.begin(); it != gathers_.end();) {
    if (it->second.deadline <= now) {
      late.push_back(std::move(it->second));
      it = gathers_.erase(it);
    } else {
      ++it;
    }
  }
  // What came in time: an instance that does not answer is left out, not waited for.
  for (auto& g : late) {
    g.gathered.complete = false;
    g.done(std::move(g.gathered));
  }
  if (now >= next_origin_refresh_) {
    next_origin_refresh_ = now + kOriginRefresh;
    if (auto instances = bus_.live_instances(); instances.ok()) {
      peer_origins_.clear();
      for (const auto& i : *instances) {
        if (i.id == bus_.instance_id()) continue;
        if (auto origin = web_origin_of(i.public_url); !origin.empty()) {
          peer_origins_.push_back(origin);
        }
      }
    }
  }
}

}  // namespace tether::server
