// REST requests as tether-server receives them (the enrollment endpoint is open to anyone on
// the network): the first byte picks a route and whether the admin token is presented, the
// rest is the body. Every answer must be a well-formed response: a known status, and for
// errors a JSON {"error": {"code", "message"}} body. Routes that ask a device something go
// to an enrolled device that is online and answers at once, in turn: ok, refused
// (permission_denied, bad_value), timed out, channel lost; so the settings merge and every
// answer path run, and each request must be answered exactly once, before handle returns.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "common/Log.h"
#include "server/RestApi.h"
#include "server/SqliteStore.h"

using namespace tether;
using namespace tether::server;

namespace {

constexpr const char* kDevice = "1111111111111111111111111111111111111111111111111111111111111111";

class InstantDevices : public LiveDevices {
 public:
  std::optional<LiveDeviceState> live_state(const std::string& id) const override {
    if (id != kDevice) return std::nullopt;
    return LiveDeviceState{};
  }
  void disconnect(const std::string&, int, const std::string&) override {}
  void request(const std::string& id, protocol::UpBody, RequestDone done) override {
    if (id != kDevice) {
      done(make_error(Errc::kUnavailable, "offline"));
      return;
    }
    protocol::ResultBody result;
    switch (turn_++ % 5) {
      case 0:
        result.data = {{"changed", nlohmann::json::object()}, {"values", {{"a.b", "c"}}}};
        done(result);
        return;
      case 1:
      case 2:
        result.ok = false;
        result.error =
            protocol::RemoteError{turn_ % 5 == 2 ? "permission_denied" : "bad_value", "refused"};
        done(result);
        return;
      case 3: done(make_error(Errc::kTimeout, "no answer")); return;
      default: done(make_error(Errc::kUnavailable, "channel closed")); return;
    }
  }

 private:
  unsigned turn_ = 0;
};

struct Fixture {
  Fixture() {
    log::set_level(log::Level::kError);  // the handlers' notices would drown the fuzzer
    std::string tmpl = (std::filesystem::temp_directory_path() / "tether-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    dir = tmpl;
    CertificateAuthorityOptions options;
    options.state_dir = dir;
    options.server_names = {"localhost"};
    ca = std::make_unique<CertificateAuthority>(
        std::move(CertificateAuthority::open(options)).value());
    store = std::move(SqliteStore::open(dir + "/tether.db")).value();
    EnrollmentSettings settings;
    settings.server_url = "wss://127.0.0.1:8443";
    settings.rate_per_minute = 100000;
    enrollment = std::make_unique<EnrollmentService>(*store, *ca, settings);
    EnrollmentTokenRecord token{"t", "h", 0, INT64_MAX, std::nullopt, "", ""};
    EnrolledDevice device;
    device.id = kDevice;
    device.new_online_key = std::string(64, 'c');
    if (!store->insert_enrollment_token(token).ok() ||
        !store->redeem_token_and_enroll("t", 1, device).ok()) {
      std::abort();
    }
    api = std::make_unique<RestApi>(*store, *enrollment, live, AdminToken::from_value("admin"));
  }
  ~Fixture() {
    api.reset();
    enrollment.reset();
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string dir;
  std::unique_ptr<CertificateAuthority> ca;
  std::unique_ptr<SqliteStore> store;
  std::unique_ptr<EnrollmentService> enrollment;
  InstantDevices live;
  std::unique_ptr<RestApi> api;
};

constexpr const char* kRoutes[][2] = {
    {"POST", "/api/v1/enroll"},
    {"POST", "/api/v1/enroll-tokens"},
    {"GET", "/api/v1/devices"},
    {"GET", "/api/v1/devices/0000000000000000000000000000000000000000000000000000000000000000"},
    {"POST",
     "/api/v1/devices/0000000000000000000000000000000000000000000000000000000000000000/revoke"},
    {"DELETE", "/api/v1/devices/x"},
    {"PUT", "/api/v1/enroll"},
    {"GET", "/api/v1/"},
    // 16 routes: the selector's low bits keep naming the same route as when there were 8,
    // so the older seeds still mean what their names say.
    {"PUT",
     "/api/v1/devices/1111111111111111111111111111111111111111111111111111111111111111/settings"},
    {"PUT",
     "/api/v1/devices/1111111111111111111111111111111111111111111111111111111111111111/settings"},
    {"GET",
     "/api/v1/devices/1111111111111111111111111111111111111111111111111111111111111111/settings"},
    {"POST",
     "/api/v1/devices/1111111111111111111111111111111111111111111111111111111111111111/reboot"},
    {"POST",
     "/api/v1/devices/1111111111111111111111111111111111111111111111111111111111111111/poweroff"},
    {"PUT",
     "/api/v1/devices/0000000000000000000000000000000000000000000000000000000000000000/settings"},
    {"POST",
     "/api/v1/devices/0000000000000000000000000000000000000000000000000000000000000000/reboot"},
    {"GET", "/api/v1/devices/1111111111111111111111111111111111111111111111111111111111111111"},
};
static_assert(std::size(kRoutes) == 16);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Fixture fixture;
  if (size == 0) return 0;
  const unsigned selector = data[0];
  const auto& route = kRoutes[selector % std::size(kRoutes)];
  HttpRequest request;
  request.method = route[0];
  request.path = route[1];
  request.peer_address = "192.0.2.1";
  if ((selector & 0x80) != 0) request.authorization = "Bearer admin";
  request.body.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  int answers = 0;
  HttpResponse response;
  fixture.api->handle(request, [&](HttpResponse r) {
    ++answers;
    response = std::move(r);
  });
  if (answers != 1) std::abort();
  switch (response.status) {
    case 200:
    case 201:
    case 202:
    case 400:
    case 401:
    case 403:
    case 404:
    case 405:
    case 409:
    case 413:
    case 429:
    case 502:
    case 504: break;
    default: std::abort();
  }
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) std::abort();
  if (response.status >= 400) {
    auto error = body.find("error");
    if (error == body.end() || !error->is_object() || !error->contains("code") ||
        !error->contains("message")) {
      std::abort();
    }
  }
  return 0;
}
