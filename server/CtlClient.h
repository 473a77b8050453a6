// tetherctl's connection to the server's REST API: where it is, how to trust it, and the
// admin token; one blocking HTTPS request per call (platform/HttpsClient.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/Result.h"

namespace tether::server {

struct CtlSettings {
  std::string server = "https://127.0.0.1:8443";  // https://HOST:PORT or wss://HOST:PORT
  std::string token_file = "/var/lib/tether-server/admin.token";
  std::string ca_file = "/var/lib/tether-server/ca.crt";
};

// Flags > environment (TETHER_SERVER, TETHER_TOKEN_FILE, TETHER_CA_FILE) > the INI file
// ~/.config/tether/ctl.conf ([ctl] server=, token_file=, ca_file=) > defaults. `flags` holds
// only what was given on the command line. `config_file` "" means the default path.
[[nodiscard]] Result<CtlSettings> resolve_ctl_settings(const CtlSettings& flags, bool server_flag,
                                                       bool token_flag, bool ca_flag,
                                                       const std::string& config_file = "");

// An API answer, whatever its status.
struct CtlResponse {
  int status = 0;
  nlohmann::json body = nlohmann::json::object();  // {} when the answer had no JSON body
  // The server's error message for a non-2xx answer ("... (HTTP 502)").
  [[nodiscard]] std::string error_message() const;
};

// How long tetherctl waits for an answer: the server answers calls that wait for a device
// within up.request_timeout (at most 5 minutes) plus a few seconds.
inline constexpr std::chrono::milliseconds kCtlCallTimeout{15'000};
inline constexpr std::chrono::milliseconds kCtlDeviceCallTimeout{6 * 60'000};

class CtlClient {
 public:
  // Reads the token and CA files; checks the URL.
  [[nodiscard]] static Result<CtlClient> open(const CtlSettings& settings);

  // Calls the API; a non-2xx answer becomes an error carrying the server's message.
  [[nodiscard]] Result<nlohmann::json> call(
      const std::string& method, const std::string& path,
      const std::optional<nlohmann::json>& body = {},
      std::chrono::milliseconds timeout = kCtlCallTimeout) const;
  // Calls the API; any HTTP answer is a value (errors are only for not getting one).
  [[nodiscard]] Result<CtlResponse> exchange(
      const std::string& method, const std::string& path,
      const std::optional<nlohmann::json>& body = {},
      std::chrono::milliseconds timeout = kCtlCallTimeout) const;

  [[nodiscard]] const std::string& host() const noexcept { return host_; }
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  // The CA bundle the server is verified against (for tetherctl's own WebSockets).
  [[nodiscard]] const std::string& ca_pem() const noexcept { return ca_pem_; }

 private:
  CtlClient() = default;
  std::string host_;
  std::uint16_t port_ = 8443;
  std::string token_;
  std::string ca_pem_;
};

}  // namespace tether::server
