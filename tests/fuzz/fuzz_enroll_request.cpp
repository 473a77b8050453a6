// The enrollment request (POST /api/v1/enroll, open to anyone on the network) all the way
// through EnrollmentService: the JSON body, the token, the MAC binding, and above all the
// CSR in PEM, which OpenSSL parses and our code checks (EC P-256, signature) before the CA
// signs it. fuzz_rest_request stops at the token lookup (a random secret never matches), so
// here each input may name a live token: "@SECRET@" in the body becomes the secret of a new
// token, "@TOKEN@" a whole tether1.… token string, "@SECRET_MAC@" the secret of a token bound
// to 52:54:00:12:34:56. Every answer is well formed; a 201 carries a certificate for the
// CSR's key, whose SPKI hash is the device id.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "common/Log.h"
#include "platform/Pki.h"
#include "protocol/EnrollmentToken.h"
#include "server/RestApi.h"
#include "server/SqliteStore.h"

using namespace tether;
using namespace tether::server;

namespace {

constexpr const char* kBoundMac = "52:54:00:12:34:56";

class NoDevices : public LiveDevices {
 public:
  std::optional<LiveDeviceState> live_state(const std::string&) const override {
    return std::nullopt;
  }
  void disconnect(const std::string&, int, const std::string&) override {}
  void request(const std::string&, protocol::UpBody, RequestDone done) override {
    done(make_error(Errc::kUnavailable, "offline"));
  }
};

struct Fixture {
  Fixture() {
    log::set_level(log::Level::kError);  // every refusal is logged at notice
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
    settings.rate_per_minute = 100000000;
    enrollment = std::make_unique<EnrollmentService>(*store, *ca, settings);
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
  NoDevices live;
  std::unique_ptr<RestApi> api;
};

// Replaces every `placeholder` with what `make` returns (called once, only if needed).
template <typename Make>
void substitute(std::string& body, const std::string& placeholder, Make make) {
  std::size_t at = body.find(placeholder);
  if (at == std::string::npos) return;
  const std::string value = make();
  for (; at != std::string::npos; at = body.find(placeholder, at + value.size())) {
    body.replace(at, placeholder.size(), value);
  }
}

void check_created(const nlohmann::json& body) {
  const auto id = body.value("device_id", std::string());
  const auto pem = body.value("certificate_pem", std::string());
  auto cert = pki::certificate_from_pem(pem);
  if (id.size() != 64 || !cert.ok()) std::abort();
  auto spki = pki::spki_sha256(X509_get0_pubkey(cert->get()));
  if (!spki.ok() || pki::to_hex(*spki) != id) std::abort();
  if (!body.contains("ca_certificates_pem") || body.value("server_url", "").empty()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Fixture fixture;
  std::string body(reinterpret_cast<const char*>(data), size);
  auto token = [&](const std::string& mac) {
    auto created = fixture.enrollment->create_token(std::nullopt, mac);
    if (!created.ok()) std::abort();
    return created->token;
  };
  auto secret = [&](const std::string& mac) {
    auto parsed = protocol::parse_enrollment_token(token(mac));
    if (!parsed.ok()) std::abort();
    return parsed->secret;
  };
  substitute(body, "@SECRET_MAC@", [&] { return secret(kBoundMac); });
  substitute(body, "@SECRET@", [&] { return secret(""); });
  substitute(body, "@TOKEN@", [&] { return token(""); });

  HttpRequest request;
  request.method = "POST";
  request.path = "/api/v1/enroll";
  request.peer_address = "192.0.2.1";
  request.body = std::move(body);
  int answers = 0;
  HttpResponse response;
  fixture.api->handle(request, [&](HttpResponse r) {
    ++answers;
    response = std::move(r);
  });
  if (answers != 1) std::abort();
  auto json = nlohmann::json::parse(response.body, nullptr, false);
  if (json.is_discarded() || !json.is_object()) std::abort();
  switch (response.status) {
    case 201: check_created(json); return 0;
    case 400:
    case 401:
    case 403:
    case 413:
    case 429: break;
    default: std::abort();
  }
  auto error = json.find("error");
  if (error == json.end() || !error->is_object() || !error->contains("code") ||
      !error->contains("message")) {
    std::abort();
  }
  return 0;
}
