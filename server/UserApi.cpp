#include "server/UserApi.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <array>
#include <ctime>

#include "common/Base64.h"
#include "common/Hex.h"
#include "common/Log.h"
#include "protocol/JsonFieldReader.h"
#include "protocol/LimitedJsonParser.h"
#include "server/PasswordHash.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using protocol::JsonFieldReader;
using protocol::StringKind;

constexpr std::size_t kMaxUserName = 64;
constexpr std::string_view kBearer = "Bearer ";
// The same words for an unknown user, a wrong password and a wrong token: a caller learns
// nothing about which names exist.
constexpr const char* kLoginFailed = "login failed: wrong name, password or token";

// Sessions are stored by the SHA-256 of their token: a lookup reveals nothing about tokens
// through timing, and the tokens themselves are not kept.
std::string token_digest(std::string_view token) {
  std::array<std::uint8_t, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  return hex_encode(digest);
}

std::int64_t unix_seconds(UserApi::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::optional<std::string_view> bearer_of(std::string_view authorization) {
  if (authorization.size() <= kBearer.size() ||
      authorization.substr(0, kBearer.size()) != kBearer) {
    return std::nullopt;
  }
  return authorization.substr(kBearer.size());
}

Result<json> parse_object(const std::string& body) {
  if (body.empty()) return json::object();
  protocol::JsonLimits limits;
  limits.max_bytes = 64 * 1024;
  limits.max_depth = 4;
  limits.max_string_bytes = kMaxPasswordLength;
  limits.max_key_bytes = 64;
  limits.max_array_items = 16;
  limits.max_object_members = 16;
  limits.max_values = 64;
  TETHER_ASSIGN_OR_RETURN(json doc, protocol::parse_limited_json(body, limits));
  if (!doc.is_object()) {
    return make_error(Errc::kWrongType, "the request body must be a JSON object, not " +
                                            std::string(protocol::json_type_name(doc)));
  }
  return doc;
}

HttpResponse from_error(const Error& error) {
  return error_response(http_status_for(error.code), error.code, error.message);
}

HttpResponse method_not_allowed(const std::string& allowed) {
  HttpResponse r = error_response(405, Errc::kInvalidArgument,
                                  "method not allowed here (allowed: " + allowed + ")");
  r.headers.emplace_back("Allow", allowed);
  return r;
}

HttpResponse unauthenticated(const std::string& message) {
  HttpResponse r = error_response(401, Errc::kUnauthenticated, message);
  r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

json user_json(const UserRecord& user) {
  return {{"name", user.name}, {"created_at", user.created_at}};
}

}  // namespace

UserApi::UserApi(Store& store, AdminToken admin_token, UserApiSettings settings)
    : store_(store),
      admin_token_(std::move(admin_token)),
      settings_(settings),
      login_limiter_(settings.login_rate_per_minute) {}

Status UserApi::check_user_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxUserName) {
    return make_error(Errc::kBadValue,
                      "a user name has 1 to " + std::to_string(kMaxUserName) + " characters");
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) {
      return make_error(Errc::kBadValue,
                        "a user name is made of letters, digits, '.', '_' and '-', and starts "
                        "with a letter or digit");
    }
  }
  if (name == kAdminPrincipal) {
    return make_error(Errc::kBadValue, "\"admin\" is reserved for the admin token");
  }
  return {};
}

std::optional<Principal> UserApi::authenticate(std::string_view authorization,
                                               Clock::time_point now) {
  const auto token = bearer_of(authorization);
  if (!token) return std::nullopt;
  if (admin_token_.matches(*token)) return Principal{kAdminPrincipal, true};
  auto session = store_.find_api_session(token_digest(*token), unix_seconds(now));
  if (!session.ok()) {
    log::warning("cannot look up an API session: " + session.error().message);
    return std::nullopt;
  }
  if (!*session) return std::nullopt;
  if (!(*session)->admin) {
    // Removing a user ends their sessions, but an instance may have opened one while another
    // removed the user: a session whose user is gone is worth nothing.
    auto user = store_.find_user((*session)->principal);
    if (!user.ok()) {
      log::warning("cannot look up a session's user: " + user.error().message);
      return std::nullopt;
    }
    if (!*user) return std::nullopt;
  }
  return Principal{(*session)->principal, (*session)->admin};
}

std::size_t UserApi::session_count(Clock::time_point now) {
  auto count = store_.count_api_sessions(unix_seconds(now));
  return count.ok() ? static_cast<std::size_t>(*count) : 0;
}

std::optional<HttpResponse> UserApi::route(const HttpRequest& request,
                                           const std::vector<std::string>& parts,
                                           const std::optional<Principal>& principal) {
  const std::string& method = request.method;
  if (parts.size() == 1 && parts[0] == "login") {
    if (method != "POST") return method_not_allowed("POST");
    return login(request, Clock::now());
  }
  if (parts.size() == 1 && parts[0] == "logout") {
    if (method != "POST") return method_not_allowed("POST");
    if (!principal) return unauthenticated("not logged in");
    return logout(request);
  }
  if (parts.empty() || parts[0] != "users" || parts.size() > 2) return std::nullopt;
  if (parts.size() == 1 && method != "GET" && method != "POST") {
    return method_not_allowed("GET, POST");
  }
  if (parts.size() == 2 && method != "DELETE") return method_not_allowed("DELETE");
  if (!principal) {
    return unauthenticated(request.authorization.empty()
                               ? "this call needs the admin token (Authorization: Bearer ...)"
                               : "wrong or expired token");
  }
  if (!principal->admin) {
    return error_response(403, Errc::kPermissionDenied, "only the admin manages users");
  }
  if (parts.size() == 2) return delete_user(parts[1]);
  if (method == "GET") return list_users();
  return create_user(request);
}

HttpResponse UserApi::login(const HttpRequest& request, Clock::time_point now) {
  // The rate limit is per instance and runs on the monotonic clock.
  if (auto wait = login_limiter_.take(request.peer_address, RateLimiter::Clock::now())) {
    HttpResponse r = error_response(429, Errc::kUnavailable,
                                    "too many login attempts from this address; retry in " +
                                        std::to_string(wait->count()) + " s");
    r.headers.emplace_back("Retry-After", std::to_string(wait->count()));
    return r;
  }
  auto body = parse_object(request.body);
  if (!body.ok()) return from_error(body.error());
  JsonFieldReader f(*body, "");
  const auto token = f.opt_str("token", 1024, StringKind::kToken);
  const auto name = f.opt_str("name", kMaxUserName, StringKind::kSingleLine);
  const auto password = f.opt_str("password", kMaxPasswordLength, StringKind::kText);
  if (auto status = f.finish(); !status.ok()) return from_error(status.error());
  if (token.has_value() == (name.has_value() || password.has_value())) {
    return error_response(400, Errc::kMissingField,
                          "log in with {\"name\", \"password\"} or with {\"token\"}");
  }
  if (!token && (!name || !password)) {
    return error_response(400, Errc::kMissingField, "log in with both \"name\" and \"password\"");
  }

  std::optional<Principal> principal;
  if (token) {
    if (admin_token_.matches(*token)) principal = Principal{kAdminPrincipal, true};
  } else {
    auto user = check_user_name(*name).ok() ? store_.find_user(*name)
                                            : Result<std::optional<UserRecord>>(std::nullopt);
    if (!user.ok()) return from_error(user.error());
    // An unknown user costs what a known one does.
    const std::string& hash = *user ? (*user)->password_hash : decoy_password_hash();
    if (verify_password(*password, hash) && *user) principal = Principal{(*user)->name, false};
  }
  if (!principal) {
    log::notice("failed login from " + request.peer_address +
                (name ? " as \"" + name->substr(0, kMaxUserName) + "\"" : " with a token"));
    return error_response(401, Errc::kUnauthenticated, kLoginFailed);
  }
  auto opened = open_session(*principal, now);
  if (!opened.ok()) return from_error(opened.error());
  const std::string session = std::move(opened).value();
  log::notice("login of " + principal->name + " from " + request.peer_address);
  return json_response(200, {{"session", session},
                             {"name", principal->name},
                             {"admin", principal->admin},
                             {"expires_in", settings_.session_ttl.count()}});
}

HttpResponse UserApi::logout(const HttpRequest& request) {
  if (auto token = bearer_of(request.authorization)) {
    if (auto deleted = store_.delete_api_session(token_digest(*token)); !deleted.ok()) {
      return from_error(deleted.error());
    }
  }
  return json_response(200, {{"logged_out", true}});
}

Result<std::string> UserApi::open_session(const Principal& principal, Clock::time_point now) {
  std::array<std::uint8_t, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    return make_error(Errc::kInternal, "no randomness for a session");
  }
  std::string token = base64url_encode(bytes);
  ApiSessionRecord record;
  record.token_sha256 = token_digest(token);
  record.principal = principal.name;
  record.admin = principal.admin;
  record.created_at = unix_seconds(now);
  record.expires_at = unix_seconds(now + settings_.session_ttl);
  // The store forgets expired sessions and, when full, those closest to their end first.
  TETHER_TRY(store_.insert_api_session(record, unix_seconds(now), settings_.max_sessions));
  return token;
}

void UserApi::drop_sessions_of(const std::string& name) {
  if (auto dropped = store_.delete_api_sessions_of(name); !dropped.ok()) {
    log::warning("cannot end the sessions of " + name + ": " + dropped.error().message);
  }
}

HttpResponse UserApi::create_user(const HttpRequest& request) {
  auto body = parse_object(request.body);
  if (!body.ok()) return from_error(body.error());
  JsonFieldReader f(*body, "");
  const std::string name = f.str("name", kMaxUserName, StringKind::kSingleLine);
  auto password = f.opt_str("password", kMaxPasswordLength, StringKind::kText);
  if (auto status = f.finish(); !status.ok()) return from_error(status.error());
  if (auto valid = check_user_name(name); !valid.ok()) {
    return error_response(400, Errc::kBadValue, "name: " + valid.error().message);
  }
  const bool generated = !password.has_value();
  if (generated) {
    auto made = random_password();
    if (!made.ok()) return from_error(made.error());
    password = std::move(made).value();
  }
  if (auto policy = check_password_policy(*password); !policy.ok()) {
    return error_response(400, Errc::kBadValue, "password: " + policy.error().message);
  }
  auto hash = hash_password(*password);
  if (!hash.ok()) return from_error(hash.error());
  UserRecord user{name, std::move(hash).value(), static_cast<std::int64_t>(std::time(nullptr))};
  auto inserted = store_.insert_user(user);
  if (!inserted.ok()) return from_error(inserted.error());
  if (!*inserted) return error_response(409, Errc::kConflict, "user " + name + " exists already");
  log::notice("user added: " + name);
  json out = user_json(user);
  // Shown once, here; only its hash is kept.
  if (generated) out["password"] = *password;
  return json_response(201, out);
}

HttpResponse UserApi::list_users() {
  auto users = store_.list_users();
  if (!users.ok()) return from_error(users.error());
  json list = json::array();
  for (const auto& user : *users) list.push_back(user_json(user));
  return json_response(200, {{"users", list}});
}

HttpResponse UserApi::delete_user(const std::string& name) {
  if (!check_user_name(name).ok()) {
    return error_response(404, Errc::kNotFound, "no user " + name.substr(0, kMaxUserName));
  }
  auto deleted = store_.delete_user(name);
  if (!deleted.ok()) return from_error(deleted.error());
  if (!*deleted) return error_response(404, Errc::kNotFound, "no user " + name);
  drop_sessions_of(name);
  log::notice("user removed: " + name);
  return json_response(200, {{"deleted", name}});
}

}  // namespace tether::server
