// Who may use the API, and how they prove it (docs/api.md, Authentication and Users):
// the admin token, and web app users who log in with a name and password (or with the admin
// token) for an API session token. Sessions are kept in the Store (by the SHA-256 of their
// token), so that a login on one server instance holds on every other. Also the REST routes
// for that: login, logout and the user list.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/AdminToken.h"
#include "server/HttpMessage.h"
#include "server/RateLimiter.h"
#include "server/Store.h"

namespace tether::server {

// The name the admin token's holder goes by (in sessions, shadow requests, the audit log).
inline constexpr const char* kAdminPrincipal = "admin";

struct Principal {
  std::string name;    // kAdminPrincipal or a user's name
  bool admin = false;  // the admin token, or a session opened with it
};

struct UserApiSettings {
  std::chrono::seconds session_ttl{12 * 3600};
  std::size_t max_sessions = 1024;
  int login_rate_per_minute = 10;
};

class UserApi {
 public:
  // Wall-clock time: session expiry is stored and compared by every instance.
  using Clock = std::chrono::system_clock;

  UserApi(Store& store, AdminToken admin_token, UserApiSettings settings = {});

  // Who presents this Authorization header ("Bearer <admin token or session token>"); nullopt
  // for nobody (no header, another scheme, an unknown or expired token).
  [[nodiscard]] std::optional<Principal> authenticate(std::string_view authorization,
                                                      Clock::time_point now = Clock::now());

  // Answers the routes that are ours: `parts` is the path below /api/v1/, split at '/'.
  // nullopt when the route is not one of ours. `principal` is the caller's (nullopt: none).
  [[nodiscard]] std::optional<HttpResponse> route(const HttpRequest& request,
                                                  const std::vector<std::string>& parts,
                                                  const std::optional<Principal>& principal);

  // Sessions not expired (0 when the store cannot tell).
  [[nodiscard]] std::size_t session_count(Clock::time_point now = Clock::now());

  // A user name is 1-64 of [A-Za-z0-9._-], starting with a letter or digit, and not "admin".
  [[nodiscard]] static Status check_user_name(std::string_view name);

 private:
  HttpResponse login(const HttpRequest& request, Clock::time_point now);
  HttpResponse logout(const HttpRequest& request);
  HttpResponse create_user(const HttpRequest& request);
  HttpResponse list_users();
  HttpResponse delete_user(const std::string& name);
  // The new session's token.
  Result<std::string> open_session(const Principal& principal, Clock::time_point now);
  void drop_sessions_of(const std::string& name);

  Store& store_;
  AdminToken admin_token_;
  UserApiSettings settings_;
  RateLimiter login_limiter_;
};

}  // namespace tether::server
