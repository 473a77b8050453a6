// Users, login and API sessions (server/UserApi.h), password hashes, and their store table.
#include <gtest/gtest.h>

#include <openssl/sha.h>

#include <array>

#include <nlohmann/json.hpp>

#include "TempDir.h"
#include "common/Hex.h"
#include "server/PasswordHash.h"
#include "server/SqliteStore.h"
#include "server/UserApi.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using testing::TempDir;
using Clock = UserApi::Clock;

constexpr const char* kAdmin = "the-admin-token-0123456789abcdefghijklmnopq";

std::vector<std::string> parts_of(const std::string& path) {
  std::vector<std::string> out;
  std::string rest = path.substr(std::string("/api/v1/").size());
  std::size_t start = 0;
  while (true) {
    const auto slash = rest.find('/', start);
    out.push_back(rest.substr(start, slash == std::string::npos ? slash : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return out;
}

class UserApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = SqliteStore::open(dir_ / "tether.db");
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    store_ = std::move(opened).value();
    UserApiSettings settings;
    settings.max_sessions = 3;
    settings.login_rate_per_minute = 100;
    api_ = std::make_unique<UserApi>(*store_, AdminToken::from_value(kAdmin), settings);
  }

  HttpResponse call(const std::string& method, const std::string& path, const json& body,
                    const std::string& bearer = kAdmin, const std::string& peer = "192.0.2.1") {
    HttpRequest req;
    req.method = method;
    req.path = path;
    req.body = body.is_null() ? "" : body.dump();
    req.peer_address = peer;
    if (!bearer.empty()) req.authorization = "Bearer " + bearer;
    const auto principal = api_->authenticate(req.authorization);
    auto response = api_->route(req, parts_of(path), principal);
    EXPECT_TRUE(response.has_value()) << path;
    return response.value_or(HttpResponse{});
  }

  static json body_of(const HttpResponse& r) { return json::parse(r.body); }

  TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<UserApi> api_;
};

TEST(PasswordHashTest, HashesVerifyAndDiffer) {
  auto a = hash_password("correct horse", 100'000);
  auto b = hash_password("correct horse", 100'000);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);  // random salt
  EXPECT_EQ(a->rfind("pbkdf2-sha256$100000$", 0), 0u) << *a;
  EXPECT_TRUE(verify_password("correct horse", *a));
  EXPECT_FALSE(verify_password("correct horsE", *a));
  EXPECT_FALSE(verify_password("", *a));
  EXPECT_FALSE(verify_password("correct horse", "pbkdf2-sha256$1$AAAA$AAAA"));
  EXPECT_FALSE(verify_password("correct horse", "garbage"));
  EXPECT_FALSE(verify_password("anything", decoy_password_hash()));
  EXPECT_FALSE(hash_password("x", 10).ok());  // below the floor
  EXPECT_GE(kPasswordIterations, 100'000);
}

TEST(PasswordHashTest, RandomPasswordsAreLongAndDifferent) {
  auto a = random_password();
  auto b = random_password();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 24u);
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(check_password_policy(*a).ok());
  EXPECT_FALSE(check_password_policy("short").ok());
  EXPECT_FALSE(check_password_policy(std::string(2000, 'x')).ok());
}

TEST_F(UserApiTest, StoreKeepsUsers) {
  EXPECT_TRUE(store_->insert_user({"bob", "h1", 10}).value());
  EXPECT_FALSE(store_->insert_user({"bob", "h2", 11}).value());
  EXPECT_TRUE(store_->insert_user({"alice", "h3", 12}).value());
  auto users = store_->list_users().value();
  ASSERT_EQ(users.size(), 2u);
  EXPECT_EQ(users[0].name, "alice");
  EXPECT_EQ(store_->find_user("bob").value()->password_hash, "h1");
  EXPECT_FALSE(store_->find_user("carol").value().has_value());
  EXPECT_TRUE(store_->delete_user("bob").value());
  EXPECT_FALSE(store_->delete_user("bob").value());
}

TEST_F(UserApiTest, UserNames) {
  EXPECT_TRUE(UserApi::check_user_name("alice").ok());
  EXPECT_TRUE(UserApi::check_user_name("a.b-c_9").ok());
  EXPECT_FALSE(UserApi::check_user_name("").ok());
  EXPECT_FALSE(UserApi::check_user_name("admin").ok());
  EXPECT_FALSE(UserApi::check_user_name("-x").ok());
  EXPECT_FALSE(UserApi::check_user_name(".x").ok());
  EXPECT_FALSE(UserApi::check_user_name("a b").ok());
  EXPECT_FALSE(UserApi::check_user_name("<img>").ok());
  EXPECT_FALSE(UserApi::check_user_name(std::string(65, 'a')).ok());
}

TEST_F(UserApiTest, AddListRemoveNeedTheAdmin) {
  auto created = call("POST", "/api/v1/users", {{"name", "alice"}, {"password", "s3cret-pass"}});
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_FALSE(body_of(created).contains("password"));
  EXPECT_EQ(call("POST", "/api/v1/users", {{"name", "alice"}, {"password", "s3cret-pass"}}).status,
            409);
  EXPECT_EQ(call("POST", "/api/v1/users", {{"name", "admin"}}).status, 400);
  EXPECT_EQ(call("POST", "/api/v1/users", {{"name", "bob"}, {"password", "short"}}).status, 400);
  auto generated = call("POST", "/api/v1/users", {{"name", "bob"}});
  ASSERT_EQ(generated.status, 201);
  const std::string bob_password = body_of(generated)["password"];
  EXPECT_EQ(bob_password.size(), 24u);

  auto list = call("GET", "/api/v1/users", nullptr);
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(body_of(list)["users"].size(), 2u);
  EXPECT_EQ(body_of(list)["users"][0]["name"], "alice");
  EXPECT_FALSE(body_of(list)["users"][0].contains("password_hash"));

  EXPECT_EQ(call("GET", "/api/v1/users", nullptr, "").status, 401);
  EXPECT_EQ(call("GET", "/api/v1/users", nullptr, "wrong").status, 401);
  // A user's session may not manage users.
  auto login = call("POST", "/api/v1/login", {{"name", "bob"}, {"password", bob_password}}, "");
  ASSERT_EQ(login.status, 200) << login.body;
  const std::string bob_session = body_of(login)["session"];
  EXPECT_EQ(call("GET", "/api/v1/users", nullptr, bob_session).status, 403);

  EXPECT_EQ(call("DELETE", "/api/v1/users/bob", nullptr).status, 200);
  EXPECT_EQ(call("DELETE", "/api/v1/users/bob", nullptr).status, 404);
  // Removing a user ends their sessions.
  EXPECT_FALSE(api_->authenticate("Bearer " + bob_session).has_value());
  EXPECT_EQ(call("PUT", "/api/v1/users", nullptr).status, 405);
}

TEST_F(UserApiTest, LoginWithPasswordOrAdminToken) {
  ASSERT_EQ(call("POST", "/api/v1/users", {{"name", "alice"}, {"password", "s3cret-pass"}}).status,
            201);
  auto bad = call("POST", "/api/v1/login", {{"name", "alice"}, {"password", "wrong-pass"}}, "");
  auto unknown =
      call("POST", "/api/v1/login", {{"name", "nobody"}, {"password", "wrong-pass"}}, "");
  auto bad_token = call("POST", "/api/v1/login", {{"token", "not-the-token"}}, "");
  EXPECT_EQ(bad.status, 401);
  EXPECT_EQ(unknown.status, 401);
  EXPECT_EQ(bad_token.status, 401);
  // The same words whatever was wrong.
  EXPECT_EQ(bad.body, unknown.body);
  EXPECT_EQ(bad.body, bad_token.body);
  EXPECT_EQ(call("POST", "/api/v1/login", {{"name", "alice"}}, "").status, 400);
  EXPECT_EQ(
      call("POST", "/api/v1/login", {{"name", "alice"}, {"password", "x"}, {"token", "y"}}, "")
          .status,
      400);

  auto ok = call("POST", "/api/v1/login", {{"name", "alice"}, {"password", "s3cret-pass"}}, "");
  ASSERT_EQ(ok.status, 200) << ok.body;
  const json session = body_of(ok);
  EXPECT_EQ(session["name"], "alice");
  EXPECT_EQ(session["admin"], false);
  EXPECT_EQ(session["expires_in"], 12 * 3600);
  EXPECT_EQ(session["session"].get<std::string>().size(), 43u);
  auto who = api_->authenticate("Bearer " + session["session"].get<std::string>());
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->name, "alice");
  EXPECT_FALSE(who->admin);

  auto admin = call("POST", "/api/v1/login", {{"token", kAdmin}}, "");
  ASSERT_EQ(admin.status, 200);
  auto admin_who = api_->authenticate("Bearer " + body_of(admin)["session"].get<std::string>());
  ASSERT_TRUE(admin_who.has_value());
  EXPECT_EQ(admin_who->name, "admin");
  EXPECT_TRUE(admin_who->admin);
  auto direct = api_->authenticate(std::string("Bearer ") + kAdmin);
  ASSERT_TRUE(direct.has_value());
  EXPECT_EQ(direct->name, "admin");
  EXPECT_FALSE(api_->authenticate("Basic abc").has_value());
  EXPECT_FALSE(api_->authenticate("Bearer ").has_value());

  // Logout ends the session.
  const std::string token = session["session"];
  EXPECT_EQ(call("POST", "/api/v1/logout", nullptr, token).status, 200);
  EXPECT_FALSE(api_->authenticate("Bearer " + token).has_value());
}

TEST_F(UserApiTest, SessionsExpireAndAreCapped) {
  std::vector<std::string> tokens;
  for (int i = 0; i < 4; ++i) {
    auto r = call("POST", "/api/v1/login", {{"token", kAdmin}}, "");
    ASSERT_EQ(r.status, 200);
    tokens.push_back(body_of(r)["session"]);
  }
  EXPECT_EQ(api_->session_count(), 3u);  // the cap; the oldest went
  EXPECT_FALSE(api_->authenticate("Bearer " + tokens[0]).has_value());
  EXPECT_TRUE(api_->authenticate("Bearer " + tokens[3]).has_value());
  const auto later = Clock::now() + std::chrono::hours(13);
  EXPECT_FALSE(api_->authenticate("Bearer " + tokens[3], later).has_value());
}

// Sessions are in the store, by the SHA-256 of their token: they survive a restart (a new
// UserApi on the same store) and the token itself is not kept.
TEST_F(UserApiTest, SessionsAreStoredHashedAndSurviveARestart) {
  auto r = call("POST", "/api/v1/login", {{"token", kAdmin}}, "");
  ASSERT_EQ(r.status, 200);
  const std::string token = body_of(r)["session"];
  std::array<std::uint8_t, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(Clock::now().time_since_epoch()).count();
  auto stored = store_->find_api_session(hex_encode(digest), now).value();
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->principal, "admin");
  EXPECT_TRUE(stored->admin);
  EXPECT_NEAR(static_cast<double>(stored->expires_at - now), 12 * 3600, 2);
  EXPECT_FALSE(store_->find_api_session(token, now).value().has_value());

  UserApiSettings settings;
  UserApi restarted(*store_, AdminToken::from_value(kAdmin), settings);
  auto who = restarted.authenticate("Bearer " + token);
  ASSERT_TRUE(who.has_value());
  EXPECT_TRUE(who->admin);
  EXPECT_EQ(restarted.session_count(), 1u);
}

TEST(UserApiRateTest, LoginsAreRateLimitedPerSource) {
  TempDir dir;
  auto store = SqliteStore::open(dir / "tether.db").value();
  UserApiSettings settings;
  settings.login_rate_per_minute = 3;
  UserApi api(*store, AdminToken::from_value(kAdmin), settings);
  auto attempt = [&](const std::string& peer) {
    HttpRequest req;
    req.method = "POST";
    req.path = "/api/v1/login";
    req.body = R"({"token": "wrong"})";
    req.peer_address = peer;
    return api.route(req, {"login"}, std::nullopt)->status;
  };
  for (int i = 0; i < 3; ++i) EXPECT_EQ(attempt("192.0.2.7"), 401);
  EXPECT_EQ(attempt("192.0.2.7"), 429);
  EXPECT_EQ(attempt("192.0.2.8"), 401);
}

}  // namespace
}  // namespace tether::server
