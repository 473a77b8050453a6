#include "platform/HttpsClient.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "common/UniqueFd.h"
#include "platform/Pki.h"
#include "tests/unit/Subprocess.h"
#include "tests/unit/TempDir.h"

namespace tether {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

struct Identity {
  ssl::PkeyPtr key;
  ssl::X509Ptr cert;
  std::string cert_pem;
  std::string key_pem;
};

Identity make_ca(const std::string& cn) {
  Identity id;
  id.key = std::move(pki::generate_p256_key()).value();
  pki::CertificateRequest req;
  req.common_name = cn;
  req.usage = pki::CertUsage::kCa;
  id.cert = std::move(pki::make_self_signed(id.key.get(), req)).value();
  id.cert_pem = *pki::certificate_to_pem(id.cert.get());
  id.key_pem = *pki::private_key_to_pem(id.key.get());
  return id;
}

Identity issue(const Identity& ca, pki::CertUsage usage, std::vector<std::string> dns,
               std::vector<std::string> ips) {
  Identity id;
  id.key = std::move(pki::generate_p256_key()).value();
  pki::CertificateRequest req;
  req.common_name = "tether test peer";
  req.usage = usage;
  req.dns_names = std::move(dns);
  req.ip_addresses = std::move(ips);
  auto cert = pki::issue_certificate(id.key.get(), req, ca.cert.get(), ca.key.get());
  EXPECT_TRUE(cert.ok()) << cert.error().message;
  id.cert = std::move(cert).value();
  id.cert_pem = *pki::certificate_to_pem(id.cert.get());
  id.key_pem = *pki::private_key_to_pem(id.key.get());
  return id;
}

// A port nothing listens on right now (the kernel picked it for a socket we then closed).
std::uint16_t unused_port() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 0;
  socklen_t len = sizeof addr;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

// `openssl s_server -www` on 127.0.0.1 with a certificate (and optionally a chain to send, or
// a CA to require client certificates from). Answers every GET with an HTTP/1.0 page.
class TlsServer {
 public:
  struct Options {
    const Identity* server = nullptr;
    const Identity* chain = nullptr;      // sent after the leaf (-cert_chain)
    const Identity* client_ca = nullptr;  // require client certificates from it (-Verify)
  };

  // Returns an empty string on success, else why not.
  std::string start(const std::string& openssl, const Options& o) {
    const std::string cert = dir_.write("server.pem", o.server->cert_pem);
    const std::string key = dir_.write("server.key", o.server->key_pem);
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = unused_port();
      std::vector<std::string> argv = {
          openssl, "s_server", "-accept", "127.0.0.1:" + std::to_string(port_),
          "-cert", cert,       "-key",    key,
          "-www",  "-no_dhe"};
      if (o.chain != nullptr) {
        argv.insert(argv.end(), {"-cert_chain", dir_.write("chain.pem", o.chain->cert_pem)});
      }
      if (o.client_ca != nullptr) {
        argv.insert(argv.end(), {"-Verify", "1", "-CAfile",
                                 dir_.write("client-ca.pem", o.client_ca->cert_pem)});
      }
      const std::string log = dir_ / "s_server.out";
      process_ = std::make_unique<testing::Process>();
      if (!process_->start(argv, std::nullopt, log)) return "cannot start " + openssl;
      // s_server prints ACCEPT once it listens; it exits if the port was taken meanwhile.
      for (int i = 0; i < 2000; ++i) {
        if (testing::slurp(log).find("ACCEPT") != std::string::npos) return "";
        if (!process_->running()) break;
        std::this_thread::sleep_for(5ms);
      }
      process_->stop();
    }
    return "s_server did not start: " + testing::slurp(dir_ / "s_server.out");
  }

  [[nodiscard]] std::uint16_t port() const { return port_; }

 private:
  testing::TempDir dir_;
  std::unique_ptr<testing::Process> process_;
  std::uint16_t port_ = 0;
};

class HttpsClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A peer that drops the connection while we write must not kill the test binary.
    ::signal(SIGPIPE, SIG_IGN);
  }

  void SetUp() override {
    auto openssl = testing::find_program("openssl");
    if (!openssl) GTEST_SKIP() << "needs the openssl CLI for s_server";
    openssl_ = *openssl;
  }

  // Starts a server; the test fails (not skips) if it cannot.
  std::uint16_t serve(TlsServer& server, const TlsServer::Options& options) {
    const std::string why = server.start(openssl_, options);
    EXPECT_EQ(why, "");
    return server.port();
  }

  static Result<HttpsResponse> get(const std::string& host, std::uint16_t port,
                                   const TlsTrust& trust, std::chrono::milliseconds timeout = 10s) {
    HttpsOptions options;
    options.timeout = timeout;
    return https_request(host, port, trust, HttpsRequest{}, options);
  }

  static TlsTrust trust_ca(const Identity& ca) {
    TlsTrust t;
    t.ca_pem = ca.cert_pem;
    return t;
  }

  std::string openssl_;
  Identity ca_ = make_ca("Tether Test CA");
  Identity server_ = issue(ca_, pki::CertUsage::kServer, {}, {"127.0.0.1"});
};

void expect_page(const Result<HttpsResponse>& r) {
  ASSERT_TRUE(r.ok()) << errc_name(r.error().code) << ": " << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->headers.count("content-type"), 1u);
  EXPECT_THAT(r->body, HasSubstr("s_server"));
}

void expect_unauthenticated(const Result<HttpsResponse>& r, std::string_view why) {
  ASSERT_FALSE(r.ok()) << "status " << r->status;
  EXPECT_EQ(r.error().code, Errc::kUnauthenticated)
      << errc_name(r.error().code) << ": " << r.error().message;
  EXPECT_THAT(r.error().message, HasSubstr(why));
}

TEST_F(HttpsClientTest, SucceedsWithTheIssuingCa) {
  TlsServer server;
  const auto port = serve(server, {&server_});
  auto r = get("127.0.0.1", port, trust_ca(ca_));
  expect_page(r);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->peer_ca_pem, ca_.cert_pem);
}

TEST_F(HttpsClientTest, SucceedsWithTheCaAmongOthersInTheBundle) {
  TlsServer server;
  const auto port = serve(server, {&server_});
  const Identity other = make_ca("Other CA");
  TlsTrust trust;
  trust.ca_pem = other.cert_pem + ca_.cert_pem;
  auto r = get("127.0.0.1", port, trust);
  expect_page(r);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->peer_ca_pem, ca_.cert_pem) << "the CA that actually issued the chain";
}

TEST_F(HttpsClientTest, SucceedsWithThePinnedCaSentInTheChain) {
  TlsServer server;
  const auto port = serve(server, {&server_, &ca_});
  TlsTrust trust;
  trust.pinned_ca_fingerprint = *pki::certificate_fingerprint(ca_.cert.get());
  auto r = get("127.0.0.1", port, trust);
  expect_page(r);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->peer_ca_pem, ca_.cert_pem);
}

TEST_F(HttpsClientTest, WrongPinIsUnauthenticated) {
  TlsServer server;
  const auto port = serve(server, {&server_, &ca_});
  const Identity other = make_ca("Other CA");
  TlsTrust trust;
  trust.pinned_ca_fingerprint = *pki::certificate_fingerprint(other.cert.get());
  expect_unauthenticated(get("127.0.0.1", port, trust), "fingerprint");
}

TEST_F(HttpsClientTest, PinOfTheLeafIsNotEnough) {
  TlsServer server;
  const auto port = serve(server, {&server_, &ca_});
  TlsTrust trust;
  trust.pinned_ca_fingerprint = *pki::certificate_fingerprint(server_.cert.get());
  auto r = get("127.0.0.1", port, trust);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kUnauthenticated) << r.error().message;
}

TEST_F(HttpsClientTest, PinFailsWhenTheServerDoesNotSendItsCa) {
  TlsServer server;
  const auto port = serve(server, {&server_});
  TlsTrust trust;
  trust.pinned_ca_fingerprint = *pki::certificate_fingerprint(ca_.cert.get());
  expect_unauthenticated(get("127.0.0.1", port, trust), "fingerprint");
}

TEST_F(HttpsClientTest, DifferentCaIsUnauthenticated) {
  TlsServer server;
  const auto port = serve(server, {&server_});
  const Identity other = make_ca("Other CA");
  expect_unauthenticated(get("127.0.0.1", port, trust_ca(other)), "verification failed");
  // A CA with the same name but another key is just as foreign.
  const Identity impostor = make_ca("Tether Test CA");
  expect_unauthenticated(get("127.0.0.1", port, trust_ca(impostor)), "verification failed");
}

TEST_F(HttpsClientTest, HostnameMismatchIsUnauthenticated) {
  // The certificate names only IP:127.0.0.1. "localhost" reaches the same listener (if it
  // resolves to ::1 first, that connection is refused and 127.0.0.1 is tried next), so the
  // only thing that differs from the successful 127.0.0.1 request is the name check.
  TlsServer server;
  const auto port = serve(server, {&server_});
  expect_page(get("127.0.0.1", port, trust_ca(ca_)));
  expect_unauthenticated(get("localhost", port, trust_ca(ca_)), "\"localhost\"");

  // Control: a certificate that does name localhost is accepted through the same path.
  const Identity named = issue(ca_, pki::CertUsage::kServer, {"localhost"}, {});
  TlsServer named_server;
  const auto named_port = serve(named_server, {&named});
  expect_page(get("localhost", named_port, trust_ca(ca_)));
  // ... and that one is not valid for the address.
  expect_unauthenticated(get("127.0.0.1", named_port, trust_ca(ca_)), "\"127.0.0.1\"");
}

TEST_F(HttpsClientTest, CertificateForAnotherAddressIsUnauthenticated) {
  const Identity elsewhere = issue(ca_, pki::CertUsage::kServer, {}, {"10.11.12.13"});
  TlsServer server;
  const auto port = serve(server, {&elsewhere});
  expect_unauthenticated(get("127.0.0.1", port, trust_ca(ca_)), "\"127.0.0.1\"");
}

TEST_F(HttpsClientTest, ClientOnlyCertificateCannotServe) {
  // Device certificates are clientAuth only: a device must not be able to pose as the server.
  const Identity device = issue(ca_, pki::CertUsage::kClient, {}, {"127.0.0.1"});
  TlsServer server;
  const auto port = serve(server, {&device});
  expect_unauthenticated(get("127.0.0.1", port, trust_ca(ca_)), "purpose");
}

TEST_F(HttpsClientTest, ExpiredServerCertificateIsUnauthenticated) {
  // Valid from two hours ago until one hour ago, signed by the trusted CA.
  Identity expired = issue(ca_, pki::CertUsage::kServer, {}, {"127.0.0.1"});
  ASSERT_NE(X509_gmtime_adj(X509_getm_notBefore(expired.cert.get()), -7200), nullptr);
  ASSERT_NE(X509_gmtime_adj(X509_getm_notAfter(expired.cert.get()), -3600), nullptr);
  ASSERT_GT(X509_sign(expired.cert.get(), ca_.key.get(), EVP_sha256()), 0);
  expired.cert_pem = *pki::certificate_to_pem(expired.cert.get());
  TlsServer server;
  const auto port = serve(server, {&expired});
  expect_unauthenticated(get("127.0.0.1", port, trust_ca(ca_)), "expired");
}

TEST_F(HttpsClientTest, PresentsAClientCertificateWhenAsked) {
  const Identity device = issue(ca_, pki::CertUsage::kClient, {}, {});
  TlsServer server;
  const auto port = serve(server, {&server_, nullptr, &ca_});
  TlsTrust trust = trust_ca(ca_);
  trust.client_cert_pem = device.cert_pem;
  trust.client_key_pem = device.key_pem;
  expect_page(get("127.0.0.1", port, trust));

  // Without one, the server refuses the connection: an error, whichever step notices it.
  auto without = get("127.0.0.1", port, trust_ca(ca_));
  EXPECT_FALSE(without.ok());
}

TEST_F(HttpsClientTest, BadClientCredentialsAreReportedBeforeConnecting) {
  TlsTrust trust = trust_ca(ca_);
  trust.client_cert_pem = "not a certificate";
  trust.client_key_pem = server_.key_pem;
  auto r = get("127.0.0.1", 1, trust);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, StartsWith("client certificate"));

  trust.client_cert_pem = server_.cert_pem;
  trust.client_key_pem = ca_.key_pem;  // not the certificate's key
  auto mismatch = get("127.0.0.1", 1, trust);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.error().code, Errc::kCrypto);
}

TEST_F(HttpsClientTest, UnusableCaBundleIsAnError) {
  TlsServer server;
  const auto port = serve(server, {&server_});
  TlsTrust trust;
  trust.ca_pem = "garbage";
  auto r = get("127.0.0.1", port, trust);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, HasSubstr("trusted CA"));
}

TEST_F(HttpsClientTest, ClosedPortIsUnavailable) {
  const std::uint16_t port = unused_port();
  ASSERT_NE(port, 0);
  auto r = get("127.0.0.1", port, trust_ca(ca_));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kUnavailable) << r.error().message;
  EXPECT_THAT(r.error().message, HasSubstr("127.0.0.1:" + std::to_string(port)));
}

TEST_F(HttpsClientTest, UnresolvableHostIsUnavailable) {
  auto r = get("no-such-host.invalid", 443, trust_ca(ca_));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kUnavailable) << r.error().message;
  EXPECT_THAT(r.error().message, HasSubstr("no-such-host.invalid"));
}

TEST_F(HttpsClientTest, SilentPeerTimesOut) {
  // A listening socket that accepts (in the kernel) but never speaks TLS.
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  auto r = get("127.0.0.1", ntohs(addr.sin_port), trust_ca(ca_), 300ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kTimeout) << r.error().message;
  EXPECT_THAT(r.error().message, HasSubstr("TLS handshake"));
}

TEST_F(HttpsClientTest, PeerThatHangsUpIsUnavailable) {
  // Accepts the TCP connection and closes it without a word.
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::thread closer([&] { UniqueFd conn(::accept(listener.get(), nullptr, nullptr)); });
  auto r = get("127.0.0.1", ntohs(addr.sin_port), trust_ca(ca_));
  closer.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kUnavailable) << r.error().message;
}

}  // namespace
}  // namespace tether
