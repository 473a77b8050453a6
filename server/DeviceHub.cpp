#include "server/DeviceHub.h"

#include <ctime>
#include <exception>

#include "common/Log.h"
#include "platform/Pki.h"
#include "protocol/JsonFieldReader.h"
#include "protocol/LimitedJsonParser.h"
#include "server/SettingsDocument.h"

namespace tether::server {
namespace {

using protocol::Envelope;
using protocol::UpType;

std::string short_id(const std::string& id) {
  return id.substr(0, 12);
}

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string os_text(const protocol::OsInfo& os) {
  std::string out = os.name;
  if (!os.version.empty()) out += " " + os.version;
  if (!os.kernel.empty() || !os.arch.empty()) out += " (" + os.kernel + ", " + os.arch + ")";
  return out;
}

// The id to answer a message that did not parse as an envelope with: its "id" if that much
// is readable, else "0".
std::string salvage_id(std::string_view text) {
  auto doc = protocol::parse_limited_json(text, protocol::up_json_limits());
  if (doc.ok() && doc->is_object()) {
    auto it = doc->find("id");
    if (it != doc->end() && it->is_string()) {
      const auto& id = it->get_ref<const std::string&>();
      if (!id.empty() && id.size() <= protocol::kMaxMessageIdLength &&
          protocol::string_is_kind(id, protocol::StringKind::kToken)) {
        return id;
      }
    }
  }
  return "0";
}

void log_event(const std::string& device_id, const protocol::Event& event) {
  const std::string line =
      "device " + short_id(device_id) + " event " + event.kind + ": " + event.message;
  switch (event.severity) {
    case protocol::Severity::kError: log::error(line); break;
    case protocol::Severity::kWarning: log::warning(line); break;
    case protocol::Severity::kNotice: log::notice(line); break;
    case protocol::Severity::kInfo: log::info(line); break;
    case protocol::Severity::kDebug: log::debug(line); break;
  }
}

}  // namespace

DeviceHub::DeviceHub(Store& store, const CertificateAuthority& ca, UpTransport& transport,
                     HubSettings settings, WallClock wall_clock)
    : store_(store),
      ca_(ca),
      transport_(transport),
      settings_(settings),
      wall_clock_(std::move(wall_clock)) {}

DeviceHub::~DeviceHub() {
  // The callbacks may reach back into the hub (a request to an offline device is answered
  // at once): they find it empty rather than half torn down.
  auto connections = std::move(connections_);
  connections_.clear();
  current_.clear();
  Finished finished;
  const Error stopping = make_error(Errc::kUnavailable, "the server is stopping");
  for (auto& [id, conn] : connections) drain(conn, stopping, finished);
  finish(finished);
}

void DeviceHub::drain(Connection& conn, const Error& error, Finished& out) {
  for (auto& [id, request] : conn.pending.drain()) {
    if (request.done) out.emplace_back(std::move(request.done), error);
  }
}

void DeviceHub::finish(Finished& finished) {
  for (auto& [done, error] : finished) {
    // One callback failing must not cost the others their only call.
    try {
      done(error);
    } catch (const std::exception& e) {
      log::error(std::string("a request's completion failed: ") + e.what());
    } catch (...) {
      log::error("a request's completion failed");
    }
  }
  finished.clear();
}

std::int64_t DeviceHub::now() const {
  return wall_clock_ ? wall_clock_() : static_cast<std::int64_t>(std::time(nullptr));
}

Status DeviceHub::admit(const std::string& device_id) {
  TETHER_ASSIGN_OR_RETURN(auto device, store_.find_device(device_id));
  if (!device) return make_error(Errc::kPermissionDenied, "unknown device " + device_id);
  if (device->deleted) return make_error(Errc::kPermissionDenied, "device was deleted");
  if (device->revoked) return make_error(Errc::kPermissionDenied, "device was revoked");
  return {};
}

std::size_t DeviceHub::online_count() const {
  std::size_t n = 0;
  for (const auto& [id, entry] : current_) n += entry.greeted ? 1 : 0;
  return n;
}

void DeviceHub::on_connected(ConnectionId connection, const std::string& device_id,
                             const std::string& address, const std::string& gateway) {
  if (closing_) {
    // The server is stopping: a device that reconnects during the grace period hears the
    // same close (a restart: spread out) rather than being greeted and then cut off.
    transport_.close(connection, closing_->first, closing_->second);
    return;
  }
  Finished finished;
  if (auto it = current_.find(device_id); it != current_.end()) {
    log::info("device " + short_id(device_id) + " connected again from " + address +
              "; closing its older channel");
    // Nothing the old channel says counts any more (see on_message): its requests end now.
    if (auto old = connections_.find(it->second.connection); old != connections_.end()) {
      drain(old->second,
            make_error(Errc::kUnavailable,
                       "the device opened a new channel before it answered on the old one"),
            finished);
    }
    transport_.close(it->second.connection, kCloseReplaced, "replaced");
    if (it->second.greeted) announce(device_id, nullptr);
    current_.erase(it);
  }
  Connection conn;
  conn.device_id = device_id;
  conn.address = address;
  connections_.insert_or_assign(connection, std::move(conn));
  LiveEntry entry;
  entry.connection = connection;
  entry.address = address;
  entry.gateway = gateway;
  entry.last_seen = now();
  current_.insert_or_assign(device_id, std::move(entry));
  log::debug("device " + short_id(device_id) + " opened its channel from " + address +
             (gateway.empty() ? "" : " through gateway " + gateway));
  finish(finished);
}

void DeviceHub::on_closed(ConnectionId connection) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  const std::string device_id = it->second.device_id;
  Finished finished;
  drain(it->second,
        make_error(Errc::kUnavailable, "the device's channel closed before it answered"), finished);
  connections_.erase(it);
  auto live = current_.find(device_id);
  if (live != current_.end() && live->second.connection == connection) {
    const bool was_online = live->second.greeted;
    touch(device_id, live->second.address);
    current_.erase(live);
    if (was_online) {
      announce(device_id, nullptr);
      log::info("device " + short_id(device_id) + " went offline");
    }
  }
  finish(finished);
}

void DeviceHub::touch(const std::string& device_id, const std::string& address) {
  const std::int64_t t = now();
  auto live = current_.find(device_id);
  if (live != current_.end()) live->second.last_seen = t;
  DeviceActivity& activity = unflushed_[device_id];
  activity.id = device_id;
  activity.last_seen = t;
  activity.address = address;
}

void DeviceHub::send(ConnectionId connection, const Envelope& envelope) {
  transport_.send(connection, protocol::serialize_envelope(envelope));
}

void DeviceHub::send_error(ConnectionId connection, const std::string& id, const Error& error) {
  send(connection, protocol::make_error_result(id, error));
}

void DeviceHub::on_message(ConnectionId connection, std::string_view text) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  Connection& conn = it->second;
  auto live = current_.find(conn.device_id);
  // A replaced or revoked channel is on its way out: nothing it says counts any more.
  if (live == current_.end() || live->second.connection != connection) return;
  touch(conn.device_id, conn.address);

  auto envelope = protocol::parse_envelope(text);
  if (!envelope.ok()) {
    log::debug("device " + short_id(conn.device_id) +
               " sent a malformed message: " + envelope.error().message);
    send_error(connection, salvage_id(text), envelope.error());
    return;
  }
  auto body = protocol::decode_body(*envelope);
  if (!body.ok()) {
    log::debug("device " + short_id(conn.device_id) + " sent a bad " + envelope->type + ": " +
               body.error().message);
    send_error(connection, envelope->id, body.error());
    return;
  }
  handle(connection, conn, *envelope, *body);
}

void DeviceHub::handle(ConnectionId connection, Connection& conn, const Envelope& envelope,
                       protocol::UpBody& body) {
  const UpType type = protocol::up_body_type(body);
  if (type == UpType::kHello) {
    handle_hello(connection, conn, envelope.id, std::get<protocol::Hello>(body));
    return;
  }
  if (!conn.hello_done) {
    if (type != UpType::kResult) {
      send_error(connection, envelope.id, make_error(Errc::kInvalidArgument, "send hello first"));
    }
    return;
  }
  LiveEntry& live = current_[conn.device_id];
  switch (type) {
    case UpType::kStatus:
      live.status_json = dump(protocol::encode_body(body));
      unflushed_[conn.device_id].status_json = live.status_json;
      return;
    case UpType::kInventory: {
      std::string inventory = dump(protocol::encode_body(body));
      if (inventory == live.stored_inventory_json) return;
      if (auto stored = store_.update_inventory(conn.device_id, inventory); !stored.ok()) {
        log::error("cannot store the inventory of device " + short_id(conn.device_id) + ": " +
                   stored.error().message);
        return;
      }
      live.stored_inventory_json = std::move(inventory);
      return;
    }
    case UpType::kEvent: log_event(conn.device_id, std::get<protocol::Event>(body)); return;
    case UpType::kCertRenew:
      handle_cert_renew(connection, conn, envelope.id, std::get<protocol::CertRenew>(body));
      return;
    case UpType::kResult:
      handle_result(conn, envelope.id, std::get<protocol::ResultBody>(body));
      return;
    case UpType::kShadowStop:
      if (shadow_stop_handler_) {
        shadow_stop_handler_(conn.device_id, std::get<protocol::ShadowStop>(body));
      } else {
        log::debug("device " + short_id(conn.device_id) + " sent shadow_stop; no session exists");
      }
      return;
    case UpType::kHello:
    case UpType::kCommand:
    case UpType::kShadowStart:
    case UpType::kTrustUpdate:
    case UpType::kWakePeer:
    case UpType::kSettings:
    case UpType::kGatewayStatus:
      send_error(connection, envelope.id,
                 make_error(Errc::kInvalidArgument,
                            envelope.type + " is sent by the server, not by a device"));
      return;
  }
}

void DeviceHub::handle_hello(ConnectionId connection, Connection& conn, const std::string& id,
                             const protocol::Hello& hello) {
  if (hello.device_id != conn.device_id) {
    log::warning("device " + short_id(conn.device_id) + " claimed to be " +
                 short_id(hello.device_id) + " in hello; closing");
    send_error(connection, id,
               make_error(Errc::kPermissionDenied,
                          "device_id does not match the client certificate's key"));
    transport_.close(connection, 1008, "identity mismatch");
    return;
  }
  auto device = store_.find_device(conn.device_id);
  if (!device.ok() || !*device) {
    send_error(connection, id,
               device.ok() ? make_error(Errc::kNotFound, "unknown device") : device.error());
    return;
  }
  DeviceHelloRecord record;
  record.id = conn.device_id;
  record.hostname = hello.hostname;
  record.agent_version = hello.agent_version;
  record.os = os_text(hello.os);
  record.address = conn.address;
  record.seen_at = now();
  if (auto stored = store_.record_hello(record); !stored.ok()) {
    log::error("cannot record hello of device " + short_id(conn.device_id) + ": " +
               stored.error().message);
    send_error(connection, id, make_error(Errc::kInternal, "the server could not store hello"));
    return;
  }
  const bool first_hello = !conn.hello_done;
  conn.hello_done = true;
  LiveEntry& live = current_[conn.device_id];
  if (!live.greeted) {
    live.greeted = true;
    announce(conn.device_id, &live);
  }
  live.stored_inventory_json = (*device)->inventory_json;

  protocol::HelloAck ack;
  ack.server_time = now();
  ack.status_interval_s = settings_.status_interval.count();
  ack.device_name = (*device)->name;
  if (!(*device)->online_key.empty()) ack.online_key = (*device)->online_key;
  send(connection, protocol::make_ok_result(id, protocol::encode_hello_ack(ack)));
  if (first_hello) {
    log::info("device " + short_id(conn.device_id) + " (" + hello.hostname + ", agent " +
              hello.agent_version + ") online from " + conn.address);
    send_trust_update(connection, conn);
    // The whole document after every hello: one set while the device was offline arrives
    // now, and a device whose drop-in was changed behind our back is brought back to it.
    if ((*device)->settings_json) push_settings(connection, conn, **device);
  }
}

Result<std::string> DeviceHub::send_request(ConnectionId connection, Connection& conn,
                                            const protocol::UpBody& body, RequestDone done) {
  std::string what(protocol::up_type_name(protocol::up_body_type(body)));
  if (const auto* command = std::get_if<protocol::Command>(&body)) {
    what += " " + std::string(protocol::command_name(command->name));
  }
  // A copy stays here: if the request cannot be registered, `done` must still run once.
  RequestDone on_failure = done;
  auto request_id = conn.pending.add(PendingRequest{what, std::move(done)},
                                     SteadyClock::now() + settings_.request_timeout);
  if (!request_id.ok()) {
    Error error = make_error(Errc::kUnavailable, "device " + short_id(conn.device_id) + ": " +
                                                     request_id.error().message);
    if (on_failure) on_failure(error);
    return error;
  }
  send(connection, protocol::make_message(*request_id, body));
  return request_id;
}

void DeviceHub::send_trust_update(ConnectionId connection, Connection& conn) {
  protocol::TrustUpdate update;
  update.ca_fingerprints = ca_.trusted_fingerprints();
  update.ca_certificates_pem = ca_.trusted_pems();
  if (auto sent = send_request(connection, conn, update, {}); !sent.ok()) {
    log::warning(sent.error().message);
  }
}

void DeviceHub::push_settings(ConnectionId connection, Connection& conn,
                              const DeviceRecord& device) {
  auto values = settings_from_json(*device.settings_json);
  if (!values.ok()) {
    log::error("device " + short_id(device.id) +
               ": cannot push its settings: " + values.error().message);
    return;
  }
  protocol::Settings settings;
  settings.values = std::move(values).value();
  auto sent = send_request(
      connection, conn, settings,
      [this, id = device.id, previous = device.settings_error](
          Result<protocol::ResultBody> result) { on_settings_pushed(id, previous, result); });
  if (!sent.ok()) log::warning(sent.error().message);
}

void DeviceHub::on_settings_pushed(const std::string& device_id, const std::string& previous_error,
                                   const Result<protocol::ResultBody>& result) {
  std::string error;
  if (!result.ok()) {
    // Offline again, or the server is stopping: the next hello pushes again.
    if (result.error().code == Errc::kUnavailable) return;
    error = std::string(errc_name(result.error().code)) + ": the device did not answer in time";
  } else if (!result->ok) {
    error = result->error ? result->error->code + ": " + result->error->message : "refused";
  }
  if (error.empty()) {
    log::info("device " + short_id(device_id) + " applied its server settings");
  } else {
    log::warning("device " + short_id(device_id) + " did not apply its server settings: " + error);
  }
  if (error == previous_error) return;
  if (auto stored = store_.set_settings_error(device_id, error); !stored.ok()) {
    log::error("cannot record the settings result of device " + short_id(device_id) + ": " +
               stored.error().message);
  }
}

void DeviceHub::request(const std::string& id, protocol::UpBody body, RequestDone done) {
  auto live = current_.find(id);
  auto conn =
      live == current_.end() ? connections_.end() : connections_.find(live->second.connection);
  if (live == current_.end() || !live->second.greeted || conn == connections_.end()) {
    done(make_error(Errc::kUnavailable, "device " + id + " is offline"));
    return;
  }
  (void)send_request(live->second.connection, conn->second, body, std::move(done));
}

bool DeviceHub::notify(const std::string& id, const protocol::UpBody& body) {
  auto live = current_.find(id);
  if (live == current_.end() || !live->second.greeted ||
      connections_.find(live->second.connection) == connections_.end()) {
    return false;
  }
  send(live->second.connection,
       protocol::make_message("n" + std::to_string(next_notification_++), body));
  return true;
}

void DeviceHub::handle_cert_renew(ConnectionId connection, Connection& conn, const std::string& id,
                                  const protocol::CertRenew& renew) {
  auto key = pki::public_key_from_csr(renew.csr_pem);
  if (!key.ok()) {
    send_error(connection, id,
               make_error(Errc::kBadValue, "bad certificate request: " + key.error().message));
    return;
  }
  auto spki = pki::spki_sha256(key->get());
  if (!spki.ok() || pki::to_hex(*spki) != conn.device_id) {
    send_error(connection, id,
               make_error(Errc::kPermissionDenied,
                          "the certificate request is not for this device's key"));
    return;
  }
  auto issued = ca_.issue_device_certificate(key->get());
  if (!issued.ok()) {
    log::error("cannot renew the certificate of device " + short_id(conn.device_id) + ": " +
               issued.error().message);
    send_error(connection, id, make_error(Errc::kInternal, "the server could not issue"));
    return;
  }
  if (auto stored = store_.update_certificate(conn.device_id, issued->serial, issued->not_after);
      !stored.ok()) {
    log::error("cannot record the renewed certificate of device " + short_id(conn.device_id) +
               ": " + stored.error().message);
    send_error(connection, id, make_error(Errc::kInternal, "the server could not store"));
    return;
  }
  protocol::CertRenewAck ack;
  ack.certificate_pem = issued->certificate_pem;
  ack.ca_certificates_pem = ca_.trusted_pems();
  send(connection, protocol::make_ok_result(id, protocol::encode_cert_renew_ack(ack)));
  log::info("device " + short_id(conn.device_id) + " renewed its certificate (serial " +
            issued->serial + ", valid until " + pki::format_utc(issued->not_after) + ")");
}

void DeviceHub::handle_result(Connection& conn, const std::string& id,
                              const protocol::ResultBody& result) {
  auto request = conn.pending.resolve(id);
  if (!request) {
    log::debug("device " + short_id(conn.device_id) + " answered unknown request " + id);
    return;
  }
  if (result.ok) {
    log::debug("device " + short_id(conn.device_id) + " accepted " + request->what);
  } else {
    log::notice("device " + short_id(conn.device_id) + " refused " + request->what + ": " +
                (result.error ? result.error->code + ": " + result.error->message : "?"));
  }
  // Last: the callback may close channels, `conn` among them.
  if (request->done) request->done(result);
}

void DeviceHub::expire_requests(SteadyClock::time_point now) {
  Finished finished;
  for (auto& [connection, conn] : connections_) {
    for (auto& [id, request] : conn.pending.expire(now)) {
      log::warning("device " + short_id(conn.device_id) + " did not answer " + request.what +
                   " request " + id + " in time");
      if (request.done) {
        finished.emplace_back(
            std::move(request.done),
            make_error(Errc::kTimeout, "device " + conn.device_id + " did not answer within " +
                                           std::to_string(settings_.request_timeout.count()) +
                                           " s"));
      }
    }
  }
  finish(finished);
}

Status DeviceHub::flush() {
  if (unflushed_.empty()) return {};
  std::vector<DeviceActivity> batch;
  batch.reserve(unflushed_.size());
  for (auto& [id, activity] : unflushed_) batch.push_back(activity);
  TETHER_TRY(store_.record_activity(batch));
  unflushed_.clear();
  return {};
}

void DeviceHub::close_all(int code, const std::string& reason) {
  closing_.emplace(code, reason);
  Finished finished;
  const Error closing =
      make_error(Errc::kUnavailable, "the device's channel was closed: " + reason);
  for (auto& [connection, conn] : connections_) {
    drain(conn, closing, finished);
    transport_.close(connection, code, reason);
  }
  finish(finished);
}

std::optional<LiveDeviceState> DeviceHub::live_state(const std::string& id) const {
  auto it = current_.find(id);
  if (it == current_.end() || !it->second.greeted) return std::nullopt;
  LiveDeviceState state;
  state.address = it->second.address;
  state.gateway = it->second.gateway;
  if (!state.gateway.empty()) state.connected_via = "gateway:" + state.gateway;
  state.last_seen = it->second.last_seen;
  state.status_json = it->second.status_json;
  return state;
}

void DeviceHub::disconnect(const std::string& id, int close_code, const std::string& reason) {
  auto it = current_.find(id);
  if (it == current_.end()) return;
  Finished finished;
  if (auto conn = connections_.find(it->second.connection); conn != connections_.end()) {
    drain(conn->second,
          make_error(Errc::kUnavailable, "the device's channel was closed: " + reason), finished);
  }
  touch(id, it->second.address);
  transport_.close(it->second.connection, close_code, reason);
  if (it->second.greeted) announce(id, nullptr);
  current_.erase(it);
  finish(finished);
}

void DeviceHub::announce(const std::string& device_id, const LiveEntry* entry) {
  if (!presence_handler_) return;
  if (entry == nullptr) {
    presence_handler_(device_id, std::nullopt);
  } else {
    presence_handler_(device_id, entry->gateway.empty() ? "direct" : "gateway:" + entry->gateway);
  }
}

std::vector<std::pair<std::string, std::string>> DeviceHub::online_devices() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [id, entry] : current_) {
    if (entry.greeted) {
      out.emplace_back(id, entry.gateway.empty() ? "direct" : "gateway:" + entry.gateway);
    }
  }
  return out;
}

}  // namespace tether::server
