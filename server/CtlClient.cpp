#include "server/CtlClient.h"

#include <cstdlib>

#include "common/Config.h"
#include "common/FileIo.h"
#include "platform/HttpsClient.h"
#include "protocol/EnrollmentToken.h"
#include "protocol/LimitedJsonParser.h"

namespace tether::server {
namespace {

const ConfigSchema& ctl_schema() {
  static const ConfigSchema schema = {
      {"ctl.server", SettingType::kString, "", "server URL"},
      {"ctl.token_file", SettingType::kString, "", "admin token file"},
      {"ctl.ca_file", SettingType::kString, "", "CA certificate file"},
  };
  return schema;
}

Errc errc_for_status(int status) {
  switch (status) {
    case 400: return Errc::kBadValue;
    case 401: return Errc::kUnauthenticated;
    case 403: return Errc::kPermissionDenied;
    case 404: return Errc::kNotFound;
    case 409: return Errc::kConflict;
    case 413: return Errc::kTooLarge;
    case 429:
    case 502:
    case 503: return Errc::kUnavailable;
    case 504: return Errc::kTimeout;
    default: return Errc::kInternal;
  }
}

}  // namespace

Result<CtlSettings> resolve_ctl_settings(const CtlSettings& flags, bool server_flag,
                                         bool token_flag, bool ca_flag,
                                         const std::string& config_file) {
  CtlSettings out;
  std::string path = config_file;
  if (path.empty()) {
    const char* home = std::getenv("HOME");
    if (home != nullptr && *home != '\0') path = std::string(home) + "/.config/tether/ctl.conf";
  }
  if (!path.empty() && file_exists(path)) {
    Config config(ctl_schema());
    TETHER_ASSIGN_OR_RETURN(std::string text, read_file(path, 64 * 1024));
    TETHER_TRY(config.apply_ini(text, path));
    if (!config.string("ctl.server").empty()) out.server = config.string("ctl.server");
    if (!config.string("ctl.token_file").empty()) out.token_file = config.string("ctl.token_file");
    if (!config.string("ctl.ca_file").empty()) out.ca_file = config.string("ctl.ca_file");
  }
  auto env = [](const char* name, std::string& target) {
    const char* value = std::getenv(name);
    if (value != nullptr && *value != '\0') target = value;
  };
  env("TETHER_SERVER", out.server);
  env("TETHER_TOKEN_FILE", out.token_file);
  env("TETHER_CA_FILE", out.ca_file);
  if (server_flag) out.server = flags.server;
  if (token_flag) out.token_file = flags.token_file;
  if (ca_flag) out.ca_file = flags.ca_file;
  return out;
}

Result<CtlClient> CtlClient::open(const CtlSettings& settings) {
  CtlClient client;
  std::string url = settings.server;
  if (url.rfind("https://", 0) == 0) {
    url = "wss://" + url.substr(8);
  } else if (url.rfind("wss://", 0) != 0) {
    return make_error(Errc::kInvalidArgument,
                      "--server must be https://HOST:PORT or wss://HOST:PORT, not \"" + url + "\"");
  }
  auto parsed = protocol::parse_server_url(url);
  if (!parsed.ok()) {
    return make_error(Errc::kInvalidArgument, "--server: " + parsed.error().message);
  }
  client.host_ = parsed->host;
  client.port_ = parsed->port;
  auto token = read_file(settings.token_file, 4096);
  if (!token.ok()) return token.error().context("reading the admin token");
  client.token_ = std::move(token).value();
  while (!client.token_.empty() && (client.token_.back() == '\n' || client.token_.back() == '\r' ||
                                    client.token_.back() == ' ')) {
    client.token_.pop_back();
  }
  if (client.token_.empty()) {
    return make_error(Errc::kBadValue, settings.token_file + " is empty");
  }
  auto ca = read_file(settings.ca_file, 256 * 1024);
  if (!ca.ok()) return ca.error().context("reading the server's CA certificate");
  client.ca_pem_ = std::move(ca).value();
  return client;
}

std::string CtlResponse::error_message() const {
  std::string message = "HTTP " + std::to_string(status);
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    const auto& error = body["error"];
    if (error.contains("message") && error["message"].is_string()) {
      message = error["message"].get<std::string>() + " (HTTP " + std::to_string(status) + ")";
    }
  }
  return message;
}

Result<CtlResponse> CtlClient::exchange(const std::string& method, const std::string& path,
                                        const std::optional<nlohmann::json>& body,
                                        std::chrono::milliseconds timeout) const {
  HttpsRequest request;
  request.method = method;
  request.path = path;
  request.headers.emplace_back("Authorization", "Bearer " + token_);
  request.headers.emplace_back("Accept", "application/json");
  if (body) {
    request.headers.emplace_back("Content-Type", "application/json");
    request.body = body->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  TlsTrust trust;
  trust.ca_pem = ca_pem_;
  HttpsOptions options;
  options.timeout = timeout;
  auto response = https_request(host_, port_, trust, request, options);
  if (!response.ok()) return response.error();
  protocol::JsonLimits limits;
  limits.max_bytes = 64 * 1024 * 1024;
  limits.max_array_items = 10'000'000;
  limits.max_values = 100'000'000;
  limits.max_string_bytes = 1024 * 1024;
  auto doc = protocol::parse_limited_json(response->body, limits);
  const bool success = response->status >= 200 && response->status < 300;
  if (!doc.ok() && success) return doc.error().context("the server's answer");
  CtlResponse out;
  out.status = response->status;
  if (doc.ok()) out.body = std::move(doc).value();
  return out;
}

Result<nlohmann::json> CtlClient::call(const std::string& method, const std::string& path,
                                       const std::optional<nlohmann::json>& body,
                                       std::chrono::milliseconds timeout) const {
  TETHER_ASSIGN_OR_RETURN(CtlResponse response, exchange(method, path, body, timeout));
  if (response.status < 200 || response.status >= 300) {
    return make_error(errc_for_status(response.status), response.error_message());
  }
  return std::move(response.body);
}

}  // namespace tether::server
