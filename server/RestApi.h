// The REST API under /api/v1 (docs/api.md): routing, authentication, request bodies and
// JSON responses, as a function from HttpRequest to HttpResponse.
#pragma once

#include <string>

#include "server/AdminToken.h"
#include "server/EnrollmentService.h"
#include "server/HttpMessage.h"
#include "server/LiveDevices.h"
#include "server/Store.h"

namespace tether::server {

class RestApi {
 public:
  RestApi(Store& store, EnrollmentService& enrollment, LiveDevices& live, AdminToken admin_token);

  // Never throws: a failure inside becomes a 500.
  [[nodiscard]] HttpResponse handle(const HttpRequest& request) noexcept;

 private:
  HttpResponse route(const HttpRequest& request);
  HttpResponse enroll(const HttpRequest& request);
  HttpResponse create_enroll_token(const HttpRequest& request);
  HttpResponse list_devices();
  HttpResponse show_device(const std::string& id);
  HttpResponse revoke_device(const std::string& id, bool also_delete);
  nlohmann::json device_json(const DeviceRecord& device, bool with_details) const;

  Store& store_;
  EnrollmentService& enrollment_;
  LiveDevices& live_;
  AdminToken admin_token_;
};

}  // namespace tether::server
