#include "server/MetricsEndpoint.h"

#include <string_view>

namespace tether::server {

Result<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::open(const std::string& state_dir,
                                                               const MetricsRegistry& registry,
                                                               std::optional<AdminToken> admin,
                                                               bool& created) {
  const std::string path = state_dir + "/metrics.token";
  TETHER_ASSIGN_OR_RETURN(AdminToken token, AdminToken::load_or_create(path, created));
  auto endpoint = std::make_unique<MetricsEndpoint>(registry, std::move(token), std::move(admin));
  endpoint->token_path_ = path;
  return endpoint;
}

MetricsEndpoint::MetricsEndpoint(const MetricsRegistry& registry, AdminToken token,
                                 std::optional<AdminToken> admin)
    : registry_(registry), token_(std::move(token)), admin_(std::move(admin)) {}

HttpResponse MetricsEndpoint::serve(const HttpRequest& request) const {
  constexpr std::string_view kBearer = "Bearer ";
  const std::string_view auth = request.authorization;
  const bool bearer = auth.substr(0, kBearer.size()) == kBearer;
  const std::string_view presented = bearer ? auth.substr(kBearer.size()) : std::string_view();
  if (!bearer || !(token_.matches(presented) || (admin_ && admin_->matches(presented)))) {
    HttpResponse r =
        error_response(401, Errc::kUnauthenticated,
                       auth.empty() ? "metrics need the metrics token (Authorization: Bearer ...)"
                                    : "not a valid metrics or admin token");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
  if (request.method != "GET" && request.method != "HEAD") {
    HttpResponse r = error_response(405, Errc::kInvalidArgument, "/metrics answers GET only");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  HttpResponse r;
  r.content_type = kMetricsContentType;
  r.body = registry_.render();
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

}  // namespace tether::server
