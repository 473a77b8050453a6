// The REST API under /api/v1 (docs/api.md): routing, authentication, request bodies and
// JSON responses. Most routes answer at once; those that ask a device something (reboot,
// settings) answer when the device's result comes back through LiveDevices.
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>

#include "server/AdminToken.h"
#include "server/EnrollmentService.h"
#include "server/GatewayApi.h"
#include "server/HttpMessage.h"
#include "server/LanDiscovery.h"
#include "server/LiveDevices.h"
#include "server/SettingsDocument.h"
#include "server/ShadowService.h"
#include "server/Store.h"
#include "server/UserApi.h"

namespace tether::server {

class RestApi {
 public:
  RestApi(Store& store, EnrollmentService& enrollment, LiveDevices& live, AdminToken admin_token);
  ~RestApi();
  RestApi(const RestApi&) = delete;
  RestApi& operator=(const RestApi&) = delete;

  // Login, sessions and users (owned by the caller). Without one, only the admin token
  // authenticates.
  void set_user_api(UserApi* users) { users_ = users; }
  // Scan, online check, wake and auto-registration routes (owned by the caller).
  void set_lan(LanDiscovery* lan) { lan_ = lan; }
  // Shadowing sessions and the audit log (owned by the caller): docs/api.md.
  void set_shadow_service(ShadowService* shadow) { shadow_ = shadow; }
  // The gateway registry and join routes (owned by the caller).
  void set_gateway_api(GatewayApi* gateways) { gateways_ = gateways; }
  // Told of every device enrolled (may connect now) and revoked or deleted (may not).
  void set_device_hooks(std::function<void(const std::string&)> enrolled,
                        std::function<void(const std::string&)> revoked) {
    on_enrolled_ = std::move(enrolled);
    on_revoked_ = std::move(revoked);
  }

  // Answers through `respond`, exactly once: before returning, or later from the event loop.
  // Never throws: a failure inside becomes a 500.
  void handle(const HttpRequest& request, HttpRespond respond) noexcept;

  // For tests and the fuzz target: the answer when it came before handle() returned,
  // nullopt when it is still waiting (for a device).
  [[nodiscard]] std::optional<HttpResponse> handle_now(const HttpRequest& request) noexcept;

 private:
  class Responder;
  // What a device said, or why it said nothing: kConflict (it is offline: never asked),
  // kUnavailable (its channel went away before it answered), kTimeout.
  using DeviceAnswer = std::function<HttpResponse(const Result<protocol::ResultBody>&)>;

  // nullopt: the answer comes later, through `respond`.
  std::optional<HttpResponse> route(const HttpRequest& request, const Responder& respond);
  HttpResponse enroll(const HttpRequest& request);
  HttpResponse create_enroll_token(const HttpRequest& request);
  HttpResponse list_devices();
  HttpResponse show_device(const std::string& id);
  HttpResponse revoke_device(const std::string& id, bool also_delete);
  std::optional<HttpResponse> power_action(const HttpRequest& request, const std::string& id,
                                           protocol::CommandName action, const Responder& respond);
  std::optional<HttpResponse> get_settings(const std::string& id, const Responder& respond);
  std::optional<HttpResponse> put_settings(const HttpRequest& request, const std::string& id,
                                           const Responder& respond);
  // Sends `body` to the device and answers with `answer`'s response to what came back.
  void ask_device(const std::string& id, protocol::UpBody body, const Responder& respond,
                  DeviceAnswer answer);
  // The device (not deleted) or the response that says why not (404, 500).
  Result<DeviceRecord> find_device(const std::string& id);
  // `live`: the device's live state when it is online (nullptr: offline).
  nlohmann::json device_json(const DeviceRecord& device, const LiveDeviceState* live,
                             bool with_details) const;

  Store& store_;
  EnrollmentService& enrollment_;
  LiveDevices& live_;
  AdminToken admin_token_;
  UserApi* users_ = nullptr;
  LanDiscovery* lan_ = nullptr;
  ShadowService* shadow_ = nullptr;
  GatewayApi* gateways_ = nullptr;
  std::function<void(const std::string&)> on_enrolled_;
  std::function<void(const std::string&)> on_revoked_;
  // Devices with a settings change waiting for the device's answer: a second change would
  // merge into a document that is about to be replaced.
  std::set<std::string> settings_in_flight_;
  // Answers that come after this object is gone see it expired and touch nothing of it.
  std::shared_ptr<RestApi*> alive_ = std::make_shared<RestApi*>(this);
};

}  // namespace tether::server
