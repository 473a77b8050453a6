#include "agent/AgentSession.h"

#include <algorithm>
#include <utility>

#include "agent/CertRenewal.h"
#include "agent/SystemInfo.h"
#include "common/Log.h"
#include "common/Version.h"
#include "platform/Pki.h"

namespace tether::agent {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::microseconds us(std::chrono::milliseconds ms) {
  return std::chrono::duration_cast<std::chrono::microseconds>(ms);
}

}  // namespace

AgentSession::AgentSession(lws_context* ctx, UpClient& client, SessionHost& host,
                           SessionOptions options)
    : client_(client),
      host_(host),
      options_(std::move(options)),
      status_timer_(ctx, [this] { send_status(); }),
      renewal_timer_(ctx, [this] { renew_certificate_now(); }),
      expiry_timer_(ctx, [this] { expire_requests(); }),
      inventory_timer_(ctx, [this] { send_inventory(); }),
      rng_(std::random_device{}()) {}

void AgentSession::send(const protocol::Envelope& env) {
  auto sent = client_.send(protocol::serialize_envelope(env));
  if (!sent.ok()) {
    log::warning("cannot send " + env.type + ": " + sent.error().message);
    client_.fail(sent.error().message);
  }
}

void AgentSession::send_request(const protocol::UpBody& body, Pending kind) {
  auto id = pending_.add(kind, Clock::now() + options_.request_timeout);
  if (!id.ok()) {
    log::warning("cannot send a request: " + id.error().message);
    return;
  }
  send(protocol::make_message(*id, body));
  schedule_expiry();
}

void AgentSession::on_channel_open() {
  ++epoch_;
  server_unavailable_ = false;
  send_hello();
}

void AgentSession::send_hello() {
  protocol::Hello hello;
  hello.device_id = host_.device_id();
  hello.agent_version = kVersion;
  hello.os = read_os_info();
  hello.hostname = read_hostname();
  hello.capabilities = options_.capabilities;
  send_request(hello, Pending::kHello);
}

void AgentSession::on_channel_closed() {
  server_unavailable_ = false;
  reset_server_state();
}

void AgentSession::reset_server_state() {
  status_timer_.cancel();
  renewal_timer_.cancel();
  expiry_timer_.cancel();
  (void)pending_.drain();
  ++epoch_;
  inventory_timer_.cancel();
  renewing_ = false;
  next_renewal_.reset();
}

void AgentSession::on_channel_message(std::string_view text) {
  auto env = protocol::parse_envelope(text);
  if (!env.ok()) {
    // As the server does (docs/protocol.md §2.3): an error result, with id "0" when the id
    // cannot be read; the channel stays up. The answer is a well-formed result, which no
    // peer answers, so errors cannot bounce back and forth.
    log::warning("refused a malformed message from the server: " + env.error().message);
    send(protocol::make_error_result("0", env.error()));
    return;
  }
  auto body = protocol::decode_body(*env);
  if (!body.ok()) {
    if (env->type != "result") send(protocol::make_error_result(env->id, body.error()));
    log::warning("refused a " + env->type + " message: " + body.error().message);
    return;
  }
  if (const auto* result = std::get_if<protocol::ResultBody>(&*body)) {
    handle_result(*env, *result);
  } else {
    handle_request(*env, *body);
  }
}

void AgentSession::on_channel_oversized() {
  const std::size_t limit = protocol::up_json_limits().max_bytes;
  log::warning("dropped a message from the server over the limit of " + std::to_string(limit) +
               " bytes");
  send(protocol::make_error_result(
      "0", make_error(Errc::kTooLarge,
                      "message exceeds the limit of " + std::to_string(limit) + " bytes")));
}

void AgentSession::handle_result(const protocol::Envelope& env,
                                 const protocol::ResultBody& result) {
  auto kind = pending_.resolve(env.id);
  if (!kind) {
    log::debug("result for unknown or expired request " + env.id);
    return;
  }
  switch (*kind) {
    case Pending::kHello: on_hello_result(result); break;
    case Pending::kCertRenew: on_renew_result(result); break;
  }
}

void AgentSession::on_gateway_status(const protocol::GatewayStatus& status) {
  if (!status.server_connected) {
    if (!server_unavailable_) {
      log::notice("connected to the gateway " + client_.status().endpoint +
                  ", but the server is unavailable behind it; waiting");
      // The gateway drops what we send now: the hello (or anything else) in flight is lost.
      reset_server_state();
      server_unavailable_ = true;
    }
    client_.gateway_status(false);
    return;
  }
  client_.gateway_status(true);
  if (server_unavailable_) {
    // The first "connected" of a channel needs nothing (its hello is on the way); after
    // "unavailable" the server has never heard of this channel: hello again.
    server_unavailable_ = false;
    log::info("the server is reachable through the gateway again; saying hello");
    send_hello();
  }
}

void AgentSession::handle_request(const protocol::Envelope& env, const protocol::UpBody& body) {
  if (const auto* gateway = std::get_if<protocol::GatewayStatus>(&body)) {
    on_gateway_status(*gateway);
    return;  // a notification: no reply
  }
  if (const auto* trust = std::get_if<protocol::TrustUpdate>(&body)) {
    send(handle_trust_update(env.id, *trust));
    return;
  }
  if (const auto* command = std::get_if<protocol::Command>(&body)) {
    std::weak_ptr<AgentSession*> weak = self_;
    const std::uint64_t epoch = epoch_;
    const std::string id = env.id;
    const std::string name(protocol::command_name(command->name));
    log::info("command from the server: " + name);
    if (command->name == protocol::CommandName::kRefreshInventory) inventory_changed();
    host_.run_command(*command, [weak, epoch, id, name](Result<nlohmann::json> result) {
      auto self = weak.lock();
      if (!self) return;
      if (!result.ok()) log::warning("command " + name + " failed: " + result.error().message);
      (*self)->reply_later(epoch, id, std::move(result));
    });
    return;
  }
  if (const auto* wake = std::get_if<protocol::WakePeer>(&body)) {
    auto sent = host_.wake_peer(*wake);
    if (!sent.ok()) log::warning("wake_peer refused: " + sent.error().message);
    send(sent.ok() ? protocol::make_ok_result(env.id, *sent)
                   : protocol::make_error_result(env.id, sent.error()));
    return;
  }
  if (const auto* start = std::get_if<protocol::ShadowStart>(&body)) {
    std::weak_ptr<AgentSession*> weak = self_;
    const std::uint64_t epoch = epoch_;
    const std::string id = env.id;
    host_.start_shadow(*start, [weak, epoch, id](protocol::ResultBody result) {
      auto self = weak.lock();
      if (!self) return;
      (*self)->reply_body_later(epoch, id, std::move(result));
    });
    return;
  }
  if (const auto* stop = std::get_if<protocol::ShadowStop>(&body)) {
    host_.stop_shadow(*stop);
    return;  // a notification: no reply
  }
  if (const auto* settings = std::get_if<protocol::Settings>(&body)) {
    auto applied = host_.apply_settings(*settings);
    if (!applied.ok()) {
      log::warning(applied.error().message);
      send(protocol::make_error_result(env.id, applied.error()));
    } else {
      send(protocol::make_ok_result(env.id, *applied));
    }
    return;
  }
  // Every request gets an answer, so the server never waits out a timeout on us.
  if (env.type == "status" || env.type == "inventory" || env.type == "event" ||
      env.type == "shadow_stop") {
    return;  // notifications: no reply
  }
  send(protocol::make_error_result(
      env.id, make_error(Errc::kUnknownType, "this agent does not handle " + env.type + " yet")));
}

void AgentSession::on_hello_result(const protocol::ResultBody& result) {
  if (!result.ok) {
    const std::string why =
        result.error ? result.error->code + ": " + result.error->message : "no reason given";
    log::error("the server refused hello: " + why);
    client_.fail("hello refused: " + why);
    return;
  }
  auto ack = protocol::decode_hello_ack(result.data);
  if (!ack.ok()) {
    log::error("bad hello answer: " + ack.error().message);
    client_.fail("bad hello answer");
    return;
  }
  status_interval_ = std::chrono::seconds(ack->status_interval_s);
  host_.on_hello_ack(*ack);
  client_.mark_ready();
  log::info("connected to " + client_.status().endpoint + " as device " + host_.device_id());
  send_status();
  send_inventory();
  for (const auto& event : host_.channel_events()) send(protocol::make_message("d-event", event));
  for (const auto& stop : std::exchange(unsent_stops_, {})) {
    send(protocol::make_message("d-shadow-stop-" + stop.session_id, stop));
  }
  schedule_renewal();
}

void AgentSession::reply_later(std::uint64_t epoch, const std::string& id,
                               Result<nlohmann::json> result) {
  if (epoch != epoch_ || !client_.ready()) return;
  send(result.ok() ? protocol::make_ok_result(id, *result)
                   : protocol::make_error_result(id, result.error()));
}

void AgentSession::reply_body_later(std::uint64_t epoch, const std::string& id,
                                    protocol::ResultBody body) {
  if (epoch != epoch_ || !client_.ready()) return;
  send(protocol::make_message(id, body));
}

void AgentSession::send_shadow_stop(const protocol::ShadowStop& stop) {
  // A tunnel lost with the network has usually taken the UP channel with it: the stop is
  // sent again after the next hello, so the server's audit gets the device's reason instead
  // of its own `device_closed` (a repeat for a session it knows the reason of is ignored).
  if (!client_.ready() || stop.reason == "tunnel_lost") {
    if (unsent_stops_.size() == kMaxUnsentStops) unsent_stops_.erase(unsent_stops_.begin());
    unsent_stops_.push_back(stop);
  }
  if (!client_.ready()) return;
  send(protocol::make_message("d-shadow-stop-" + stop.session_id, stop));
}

void AgentSession::inventory_changed() {
  if (inventory_timer_.pending()) return;
  inventory_timer_.schedule(
      std::chrono::duration_cast<std::chrono::microseconds>(options_.inventory_debounce));
}

void AgentSession::send_inventory() {
  if (!client_.ready()) return;
  auto inv = host_.inventory();
  if (!inv) return;
  send(protocol::make_message("d-inventory", *inv));
}

void AgentSession::send_status() {
  if (!client_.ready()) return;
  send(protocol::make_message("d-status", read_status_report(host_.shadow_sessions())));
  status_timer_.schedule(std::chrono::duration_cast<std::chrono::microseconds>(status_interval_));
}

void AgentSession::schedule_renewal() {
  auto info = pki::describe(host_.device_certificate());
  if (!info.ok()) return;
  std::uniform_real_distribution<double> jitter(0.0, 1.0);
  const std::time_t now = std::time(nullptr);
  const auto delay = renewal_delay(info->not_before, info->not_after, now, jitter(rng_));
  next_renewal_ = now + delay.count();
  renewal_timer_.schedule(std::chrono::duration_cast<std::chrono::microseconds>(delay) +
                          std::chrono::microseconds(1));
  host_.on_session_changed();
}

void AgentSession::renew_certificate_now() {
  if (!client_.ready() || renewing_) return;
  auto csr = pki::make_csr_pem(host_.device_key(), host_.device_id());
  if (!csr.ok()) {
    log::error("cannot make a certificate request: " + csr.error().message);
    return;
  }
  renewing_ = true;
  log::info("renewing the device certificate");
  send_request(protocol::CertRenew{*csr}, Pending::kCertRenew);
}

void AgentSession::on_renew_result(const protocol::ResultBody& result) {
  renewing_ = false;
  auto retry = [this](const std::string& why) {
    auto info = pki::describe(host_.device_certificate());
    const auto delay = info.ok() ? renewal_retry_delay(info->not_after, std::time(nullptr))
                                 : std::chrono::seconds(300);
    log::warning("certificate renewal failed (" + why + "); trying again in " +
                 std::to_string(delay.count()) + " s");
    next_renewal_ = std::time(nullptr) + delay.count();
    renewal_timer_.schedule(std::chrono::duration_cast<std::chrono::microseconds>(delay));
  };
  if (!result.ok) {
    retry(result.error ? result.error->message : "refused");
    return;
  }
  auto ack = protocol::decode_cert_renew_ack(result.data);
  if (!ack.ok()) {
    retry(ack.error().message);
    return;
  }
  auto cert = pki::certificate_from_pem(ack->certificate_pem);
  if (!cert.ok()) {
    retry(cert.error().message);
    return;
  }
  // The new certificate must be for our key and issued by a CA we trust; the CA
  // certificates come with the answer and are checked against the pinned fingerprints.
  if (!pki::key_matches_certificate(host_.device_key(), cert->get())) {
    retry("the new certificate is not for this device's key");
    return;
  }
  std::vector<ssl::X509Ptr> cas;
  std::vector<X509*> presented{cert->get()};
  for (const auto& pem : ack->ca_certificates_pem) {
    auto ca = pki::certificate_from_pem(pem);
    if (ca.ok()) {
      presented.push_back(ca->get());
      cas.push_back(std::move(ca).value());
    }
  }
  auto anchor = pki::verify_pinned_chain(cert->get(), presented, host_.trusted_cas(),
                                         pki::CertUsage::kClient);
  if (!anchor.ok()) {
    retry(anchor.error().message);
    return;
  }
  auto info = pki::describe(cert->get());
  auto installed = host_.install_certificate(std::move(cert).value());
  if (!installed.ok()) {
    retry(installed.error().message);
    return;
  }
  if (info.ok()) {
    log::info("device certificate renewed: serial " + info->serial + ", valid until " +
              pki::format_utc(info->not_after));
  }
  schedule_renewal();
}

protocol::Envelope AgentSession::handle_trust_update(const std::string& id,
                                                     const protocol::TrustUpdate& t) {
  const std::string current = host_.channel_ca();
  if (!current.empty() && std::find(t.ca_fingerprints.begin(), t.ca_fingerprints.end(), current) ==
                              t.ca_fingerprints.end()) {
    return protocol::make_error_result(
        id,
        make_error(Errc::kBadValue, "the new set leaves out the CA this channel is verified by"));
  }
  if (t.ca_fingerprints != host_.trusted_cas()) {
    auto saved = host_.set_trusted_cas(t.ca_fingerprints);
    if (!saved.ok()) return protocol::make_error_result(id, saved.error());
    log::info("trusted CA set updated: " + std::to_string(t.ca_fingerprints.size()) + " CA(s)");
  }
  return protocol::make_ok_result(id, {{"ca_fingerprints", host_.trusted_cas()}});
}

void AgentSession::schedule_expiry() {
  auto next = pending_.next_deadline();
  if (!next) {
    expiry_timer_.cancel();
    return;
  }
  const auto delay = std::max(Clock::duration::zero(), *next - Clock::now());
  expiry_timer_.schedule(std::chrono::duration_cast<std::chrono::microseconds>(delay) +
                         std::chrono::microseconds(1000));
}

void AgentSession::expire_requests() {
  for (auto& [id, kind] : pending_.expire(Clock::now())) {
    if (kind == Pending::kHello) {
      client_.fail("no answer to hello");
    } else if (kind == Pending::kCertRenew) {
      renewing_ = false;
      log::warning("certificate renewal request " + id + " timed out");
      renewal_timer_.schedule(us(std::chrono::milliseconds(30000)));
    }
  }
  schedule_expiry();
}

}  // namespace tether::agent
