// The agent's side of the Unified Protocol over an open channel: hello first, then periodic
// status; answers the server's requests; renews the device certificate before it expires.
// Behind a gateway (gateway_status) it waits while the server is unavailable and says hello
// again when the server is back.
// Everything that must outlive a channel (identity, trust set) lives with the SessionHost.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "agent/UpClient.h"
#include "common/LwsLoop.h"
#include "platform/OpenSsl.h"
#include "protocol/PendingRequests.h"
#include "protocol/UpMessage.h"

namespace tether::agent {

// What the session needs from the process around it.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  [[nodiscard]] virtual const std::string& device_id() const = 0;
  [[nodiscard]] virtual EVP_PKEY* device_key() const = 0;
  [[nodiscard]] virtual X509* device_certificate() const = 0;
  // Persists a renewed certificate (atomically) and presents it on new connections.
  [[nodiscard]] virtual Status install_certificate(ssl::X509Ptr cert) = 0;
  [[nodiscard]] virtual const std::vector<std::string>& trusted_cas() const = 0;
  // Persists and applies a new trusted CA set.
  [[nodiscard]] virtual Status set_trusted_cas(std::vector<std::string> fingerprints) = 0;
  // The CA the current channel's server certificate was verified against.
  [[nodiscard]] virtual std::string channel_ca() const = 0;
  // Called when the server answered hello (device name, online-check key).
  virtual void on_hello_ack(const protocol::HelloAck& ack) = 0;
  // Something `status` shows changed (e.g. the next renewal time).
  virtual void on_session_changed() {}

  using CommandDone = std::function<void(Result<nlohmann::json>)>;
  // Carries out a command from the server; `done` (called once, maybe later) gets the
  // result's data or the error to report.
  virtual void run_command(const protocol::Command& command, CommandDone done) {
    done(make_error(Errc::kUnknownType, "this agent does not run " +
                                            std::string(protocol::command_name(command.name))));
  }
  // Applies a settings document from the server: the ok data or the refusal.
  [[nodiscard]] virtual Result<nlohmann::json> apply_settings(const protocol::Settings&) {
    return make_error(Errc::kUnknownType, "this agent does not take settings");
  }
  using ShadowAnswer = std::function<void(protocol::ResultBody)>;
  // Starts a shadowing session (docs/protocol.md §5); `answer` (called once, maybe much later:
  // the user may be asked) gets the result to send.
  virtual void start_shadow(const protocol::ShadowStart&, ShadowAnswer answer) {
    protocol::ResultBody r;
    r.ok = false;
    r.error = protocol::RemoteError{"policy", "this agent does not shadow"};
    answer(std::move(r));
  }
  // The server ended a session.
  virtual void stop_shadow(const protocol::ShadowStop&) {}
  // How many shadowing sessions run (for `status`).
  [[nodiscard]] virtual int shadow_sessions() const { return 0; }
  // The device's inventory, when the host has one to send.
  [[nodiscard]] virtual std::optional<protocol::Inventory> inventory() { return std::nullopt; }
  // Sends wake-on-LAN magic packets for peers (wake_peer): the ok data or the refusal.
  [[nodiscard]] virtual Result<nlohmann::json> wake_peer(const protocol::WakePeer&) {
    return make_error(Errc::kUnknownType, "this agent does not wake peers");
  }
  // Events to report on every new channel, after status and inventory (e.g. wol.unsupported).
  [[nodiscard]] virtual std::vector<protocol::Event> channel_events() { return {}; }
};

struct SessionOptions {
  std::chrono::milliseconds request_timeout{20000};
  std::vector<std::string> capabilities = {"cert_renew", "trust_update"};
  // At most one inventory message per this interval (changes come in bursts).
  std::chrono::milliseconds inventory_debounce{2000};
};

class AgentSession final : public ChannelHandler {
 public:
  AgentSession(lws_context* ctx, UpClient& client, SessionHost& host, SessionOptions options);

  void on_channel_open() override;
  void on_channel_message(std::string_view text) override;
  void on_channel_oversized() override;
  void on_channel_closed() override;

  // Renews now (tests and `tether-agent` maintenance); no-op when no channel is ready.
  void renew_certificate_now();
  // Tells the server a shadowing session ended (when the channel is ready).
  void send_shadow_stop(const protocol::ShadowStop& stop);
  // The inventory changed: send it (debounced) once the channel is ready.
  void inventory_changed();
  [[nodiscard]] std::optional<std::time_t> next_renewal() const noexcept { return next_renewal_; }

 private:
  enum class Pending { kHello, kCertRenew };

  void send(const protocol::Envelope& env);
  void send_request(const protocol::UpBody& body, Pending kind);
  void handle_result(const protocol::Envelope& env, const protocol::ResultBody& result);
  void handle_request(const protocol::Envelope& env, const protocol::UpBody& body);
  void send_hello();
  void on_hello_result(const protocol::ResultBody& result);
  void on_gateway_status(const protocol::GatewayStatus& status);
  // Forgets what belongs to the server's side of the channel: requests in flight, timers.
  void reset_server_state();
  void on_renew_result(const protocol::ResultBody& result);
  protocol::Envelope handle_trust_update(const std::string& id, const protocol::TrustUpdate& t);
  void send_status();
  void send_inventory();
  // Sends a result for request `id` unless the channel it came on has closed since.
  void reply_later(std::uint64_t epoch, const std::string& id, Result<nlohmann::json> result);
  void reply_body_later(std::uint64_t epoch, const std::string& id, protocol::ResultBody body);
  void schedule_renewal();
  void schedule_expiry();
  void expire_requests();

  UpClient& client_;
  SessionHost& host_;
  SessionOptions options_;
  protocol::PendingRequests<Pending> pending_{"d", 64};
  std::chrono::seconds status_interval_{60};
  LwsTimer status_timer_;
  LwsTimer renewal_timer_;
  LwsTimer expiry_timer_;
  std::optional<std::time_t> next_renewal_;
  bool renewing_ = false;
  LwsTimer inventory_timer_;
  // shadow_stop messages the server may not have had (sent again after the next hello).
  static constexpr std::size_t kMaxUnsentStops = 8;
  std::vector<protocol::ShadowStop> unsent_stops_;
  // Counts channels (and server links behind a gateway): a reply that completes after its
  // channel closed is dropped.
  std::uint64_t epoch_ = 0;
  // A gateway said the server is unavailable on this channel; hello goes again when it is back.
  bool server_unavailable_ = false;
  // Callbacks that may outlive the session (logind calls) hold a weak_ptr to this.
  std::shared_ptr<AgentSession*> self_ = std::make_shared<AgentSession*>(this);
  std::mt19937_64 rng_;
};

}  // namespace tether::agent
