// GET /metrics on the HTTPS listener of tether-server and tether-gateway (docs/metrics.md):
// the registry rendered in the Prometheus text format 0.0.4. Scrapers authenticate with the
// read-only metrics token (Authorization: Bearer, <state-dir>/metrics.token, 0600, made at
// first start; Prometheus: authorization.credentials_file); on the server the admin token
// works too. Anything else is 401: metrics tell how many devices there are and what fails.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/MetricsRegistry.h"
#include "common/Result.h"
#include "server/AdminToken.h"
#include "server/HttpMessage.h"

namespace tether::server {

inline constexpr const char* kMetricsPath = "/metrics";
inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

class MetricsEndpoint {
 public:
  // Reads or creates <state_dir>/metrics.token (`created` tells which). `admin`, when given,
  // is accepted as well.
  [[nodiscard]] static Result<std::unique_ptr<MetricsEndpoint>> open(
      const std::string& state_dir, const MetricsRegistry& registry,
      std::optional<AdminToken> admin, bool& created);
  MetricsEndpoint(const MetricsRegistry& registry, AdminToken token,
                  std::optional<AdminToken> admin);

  [[nodiscard]] static bool owns(const HttpRequest& request) {
    return request.path == kMetricsPath;
  }
  // 200 with the exposition text; 401 without a valid token; 405 for a method but GET/HEAD.
  [[nodiscard]] HttpResponse serve(const HttpRequest& request) const;
  [[nodiscard]] const std::string& token_path() const noexcept { return token_path_; }

 private:
  const MetricsRegistry& registry_;
  AdminToken token_;
  std::optional<AdminToken> admin_;
  std::string token_path_;
};

}  // namespace tether::server
