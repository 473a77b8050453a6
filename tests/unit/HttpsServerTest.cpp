// The listener's handling of answers that come later: on time, never (504 after the wait),
// for a client that went away, and after the listener itself is gone. A real lws loop on
// loopback; the blocking HTTPS client runs in a thread so that the loop can serve it.
#include "server/HttpsServer.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <thread>

#include "ServerTestSupport.h"
#include "TempDir.h"
#include "common/FileIo.h"
#include "common/UniqueFd.h"
#include "platform/HttpsClient.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using tether::server::testing::open_ca;
using tether::testing::TempDir;

std::uint16_t unused_port() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 0;
  socklen_t len = sizeof addr;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

constexpr auto kWait = 2s;

class HttpsServerTest : public ::testing::Test {
 protected:
  HttpsServerTest() : ca_(open_ca(dir_.path())) {
    HttpsServerOptions options;
    options.listen = Endpoint{"127.0.0.1", unused_port()};
    options.certificate_path = ca_.server_certificate_path();
    options.key_path = ca_.server_key_path();
    options.max_response_wait = kWait;
    port_ = options.listen.port;
    server_ = std::make_unique<HttpsServer>(options);
    server_->set_http_handler([this](const HttpRequest& request, HttpRespond respond) {
      ++handled_;
      if (request.path == "/now") {
        respond(json_response(200, {{"now", true}}));
      } else if (request.path == "/later") {
        later_.push_back(std::move(respond));
      }
      // "/never": the answer is dropped unanswered; the listener's deadline answers.
    });
    const auto started = server_->start();
    EXPECT_TRUE(started.ok()) << started.error().message;
    ca_pem_ = read_file(ca_.ca_certificate_path(), 1 << 20).value();
  }

  // A request in a thread (GET, or POST when there is a body), its answer when it comes.
  std::future<Result<HttpsResponse>> get(const std::string& path,
                                         std::chrono::milliseconds timeout = 5s,
                                         const std::string& body = "") {
    return std::async(std::launch::async, [this, path, timeout, body] {
      TlsTrust trust;
      trust.ca_pem = ca_pem_;
      HttpsRequest request;
      request.method = body.empty() ? "GET" : "POST";
      request.path = path;
      request.body = body;
      HttpsOptions options;
      options.timeout = timeout;
      return https_request("127.0.0.1", port_, trust, request, options);
    });
  }

  // Runs the loop until `done` holds (or 10 s pass). lws 4.1 ignores a positive service
  // timeout (it sleeps until its next event), so the loop polls without waiting instead.
  template <typename Predicate>
  bool serve_until(Predicate done) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      lws_service(server_->context(), -1);
      std::this_thread::sleep_for(2ms);
    }
    return true;
  }

  template <typename T>
  static bool ready(const std::future<T>& f) {
    return f.wait_for(0s) == std::future_status::ready;
  }

  TempDir dir_;
  CertificateAuthority ca_;
  std::string ca_pem_;
  std::uint16_t port_ = 0;
  std::unique_ptr<HttpsServer> server_;
  std::vector<HttpRespond> later_;
  std::atomic<int> handled_{0};
};

TEST_F(HttpsServerTest, AnAnswerMayComeLater) {
  auto answer = get("/later");
  ASSERT_TRUE(serve_until([&] { return later_.size() == 1; }));
  // The client waits while the loop turns.
  const auto until = std::chrono::steady_clock::now() + 100ms;
  serve_until([&] { return std::chrono::steady_clock::now() > until; });
  EXPECT_FALSE(ready(answer));
  EXPECT_EQ(server_->waiting_exchange_count(), 1u);
  later_[0](json_response(200, {{"late", true}}));
  later_[0](json_response(500, {{"twice", true}}));  // a second answer is dropped
  ASSERT_TRUE(serve_until([&] { return ready(answer); }));
  auto response = answer.get();
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(json::parse(response->body), json({{"late", true}}));
  EXPECT_EQ(server_->waiting_exchange_count(), 0u);
}

TEST_F(HttpsServerTest, AnUnansweredRequestGets504AfterTheWait) {
  const auto started = std::chrono::steady_clock::now();
  auto answer = get("/never");
  ASSERT_TRUE(serve_until([&] { return ready(answer); }));
  const auto waited = std::chrono::steady_clock::now() - started;
  auto response = answer.get();
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(response->status, 504);
  EXPECT_EQ(json::parse(response->body)["error"]["code"], "timeout");
  EXPECT_GE(waited, kWait);

  // The answer that finally comes for a request answered 504 is dropped.
  auto late = get("/later");
  ASSERT_TRUE(serve_until([&] { return ready(late); }));
  EXPECT_EQ(late.get()->status, 504);
  ASSERT_EQ(later_.size(), 1u);
  later_[0](json_response(200, {{"late", true}}));
  auto now = get("/now");
  ASSERT_TRUE(serve_until([&] { return ready(now); }));
  EXPECT_EQ(now.get()->status, 200);
}

TEST_F(HttpsServerTest, AnAnswerForAClientThatLeftIsDropped) {
  // With a body: lws reads such a connection while it waits, so it sees the client leave.
  // (After a request without a body lws stops reading until the answer is written; a client
  // that left is then noticed when the answer, or the 504, fails to go out.)
  const auto started = std::chrono::steady_clock::now();
  auto gone = get("/later", 800ms, "{}");  // gives up before the listener's deadline
  ASSERT_TRUE(serve_until([&] { return later_.size() == 1; }));
  ASSERT_TRUE(serve_until([&] { return ready(gone); }));
  EXPECT_EQ(gone.get().error().code, Errc::kTimeout);
  ASSERT_TRUE(serve_until([&] { return server_->waiting_exchange_count() == 0; }));
  EXPECT_LT(std::chrono::steady_clock::now() - started, kWait);  // not by the 504
  // The next connection may get the same wsi back from lws; the old answer must not reach it.
  auto next = get("/later");
  ASSERT_TRUE(serve_until([&] { return later_.size() == 2; }));
  later_[0](json_response(200, {{"for", "the client that left"}}));
  later_[1](json_response(200, {{"for", "this one"}}));
  ASSERT_TRUE(serve_until([&] { return ready(next); }));
  auto response = next.get();
  ASSERT_TRUE(response.ok()) << response.error().message;
  EXPECT_EQ(json::parse(response->body), json({{"for", "this one"}}));
}

TEST_F(HttpsServerTest, AnAnswerAfterTheListenerIsGoneDoesNothing) {
  auto answer = get("/later");
  ASSERT_TRUE(serve_until([&] { return later_.size() == 1; }));
  server_.reset();
  later_[0](json_response(200, {{"late", true}}));
  EXPECT_FALSE(answer.get().ok());  // the connection closed with the listener
}

}  // namespace
}  // namespace tether::server
