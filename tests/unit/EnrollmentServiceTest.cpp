#include "server/EnrollmentService.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "ServerTestSupport.h"
#include "TempDir.h"
#include "protocol/EnrollmentToken.h"
#include "server/SqliteStore.h"

namespace tether::server {
namespace {

using namespace std::chrono_literals;
using tether::server::testing::make_device_key;
using tether::server::testing::open_ca;
using tether::testing::TempDir;

class EnrollmentServiceTest : public ::testing::Test {
 protected:
  EnrollmentServiceTest()
      : ca_(open_ca(dir_.path())),
        store_(std::move(SqliteStore::open(dir_ / "tether.db")).value()),
        service_(*store_, ca_, settings(), [this] { return now_; }) {}

  static EnrollmentSettings settings() {
    EnrollmentSettings s;
    s.server_url = "wss://ums.example:8443";
    s.default_token_ttl = 1h;
    s.rate_per_minute = 3;
    return s;
  }

  std::string secret_of(const CreatedToken& token) {
    return protocol::parse_enrollment_token(token.token).value().secret;
  }

  Result<EnrollmentResult> enroll(const std::string& secret, const std::string& csr,
                                  std::vector<std::string> macs = {}) {
    EnrollmentRequest req;
    req.secret = secret;
    req.csr_pem = csr;
    req.hostname = "tc-1";
    req.macs = std::move(macs);
    req.source_address = "10.0.0.5";
    return service_.enroll(req);
  }

  TempDir dir_;
  CertificateAuthority ca_;
  std::unique_ptr<SqliteStore> store_;
  std::int64_t now_ = 1'700'000'000;
  EnrollmentService service_;
};

TEST_F(EnrollmentServiceTest, TokenCarriesUrlAndFingerprintAndOnlyItsHashIsStored) {
  auto token = service_.create_token(std::nullopt, "");
  ASSERT_TRUE(token.ok()) << token.error().message;
  auto parsed = protocol::parse_enrollment_token(token->token);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->server_url, "wss://ums.example:8443");
  EXPECT_EQ(parsed->ca_fingerprint, ca_.ca_fingerprint());
  EXPECT_EQ(token->expires_at, now_ + 3600);
  EXPECT_FALSE(store_->find_enrollment_token(parsed->secret).value().has_value());
  auto stored = store_->find_enrollment_token(sha256_hex(parsed->secret)).value();
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->id, token->id);
}

TEST_F(EnrollmentServiceTest, EnrollsOnceThenRefusesReuse) {
  auto token = service_.create_token(std::nullopt, "").value();
  auto device = make_device_key();
  auto result = enroll(secret_of(token), device.csr);
  ASSERT_TRUE(result.ok()) << result.error().message;
  EXPECT_EQ(result->device_id, device.id);
  EXPECT_EQ(result->server_url, "wss://ums.example:8443");
  EXPECT_EQ(result->ca_certificates_pem, ca_.trusted_pems());
  EXPECT_FALSE(result->re_enrolled);
  auto cert = pki::certificate_from_pem(result->certificate_pem).value();
  EXPECT_TRUE(pki::verify_certificate(cert.get(), {}, ca_.trusted(), pki::CertUsage::kClient).ok());
  auto stored = store_->find_device(device.id).value();
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->address, "10.0.0.5");
  EXPECT_EQ(stored->cert_serial, pki::describe(cert.get()).value().serial);

  auto again = enroll(secret_of(token), make_device_key().csr);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, Errc::kUnauthenticated);
  EXPECT_EQ(again.error().message, kUsedTokenMessage);
  // The whole token string is accepted in place of the secret too.
  auto whole = enroll(service_.create_token(std::nullopt, "").value().token, device.csr);
  ASSERT_TRUE(whole.ok()) << whole.error().message;
  EXPECT_TRUE(whole->re_enrolled);
}

TEST_F(EnrollmentServiceTest, ExpiredTokenIsRefused) {
  auto token = service_.create_token(10s, "").value();
  now_ += 10;
  auto result = enroll(secret_of(token), make_device_key().csr);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, Errc::kUnauthenticated);
  EXPECT_EQ(result.error().message, kExpiredTokenMessage);
}

TEST_F(EnrollmentServiceTest, WrongSecretIsRefused) {
  auto token = service_.create_token(std::nullopt, "").value();
  std::string wrong = secret_of(token);
  wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
  for (const std::string& secret : {wrong, std::string("short"), std::string()}) {
    auto result = enroll(secret, make_device_key().csr);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().code, Errc::kUnauthenticated);
    EXPECT_EQ(result.error().message, kUnknownTokenMessage);
  }
  EXPECT_TRUE(enroll(secret_of(token), make_device_key().csr).ok());  // not spent by those
}

TEST_F(EnrollmentServiceTest, MacBinding) {
  auto token = service_.create_token(std::nullopt, "52-54-00-AA-BB-CC").value();
  EXPECT_EQ(token.mac, "52:54:00:aa:bb:cc");
  auto wrong = enroll(secret_of(token), make_device_key().csr, {"52:54:00:12:34:56"});
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, Errc::kPermissionDenied);
  EXPECT_TRUE(
      enroll(secret_of(token), make_device_key().csr, {"52:54:00:12:34:56", "52:54:00:aa:bb:cc"})
          .ok());
  EXPECT_FALSE(service_.create_token(std::nullopt, "ff:ff:ff:ff:ff:ff").ok());
}

TEST_F(EnrollmentServiceTest, BadCsrIsRefusedWithoutSpendingTheToken) {
  auto token = service_.create_token(std::nullopt, "").value();
  auto bad = enroll(secret_of(token), "-----BEGIN CERTIFICATE REQUEST-----\nnope\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::kBadValue);
  EXPECT_TRUE(enroll(secret_of(token), make_device_key().csr).ok());
}

TEST_F(EnrollmentServiceTest, RevokedKeyIsRefused) {
  auto device = make_device_key();
  ASSERT_TRUE(enroll(secret_of(service_.create_token(std::nullopt, "").value()), device.csr).ok());
  ASSERT_TRUE(store_->revoke_device(device.id, false).value());
  auto token = service_.create_token(std::nullopt, "").value();
  auto result = enroll(secret_of(token), device.csr);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, Errc::kPermissionDenied);
  EXPECT_FALSE(store_->find_enrollment_token(sha256_hex(secret_of(token))).value()->used_at);
}

TEST_F(EnrollmentServiceTest, TtlBounds) {
  EXPECT_FALSE(service_.create_token(0s, "").ok());
  EXPECT_TRUE(service_.create_token(1s, "").ok());
  EXPECT_TRUE(service_.create_token(std::chrono::hours(24 * 30), "").ok());
  EXPECT_FALSE(service_.create_token(std::chrono::hours(24 * 30) + 1s, "").ok());
}

TEST_F(EnrollmentServiceTest, RateLimitedPerSource) {
  const auto t0 = RateLimiter::Clock::now();
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(service_.admit_attempt("10.0.0.1", t0).has_value());
  auto wait = service_.admit_attempt("10.0.0.1", t0);
  ASSERT_TRUE(wait.has_value());
  EXPECT_GE(wait->count(), 1);
  EXPECT_LE(wait->count(), 20);
  EXPECT_FALSE(service_.admit_attempt("10.0.0.2", t0).has_value());  // another source
  EXPECT_FALSE(service_.admit_attempt("10.0.0.1", t0 + *wait).has_value());
}

// Two server connections to one database redeem the same token at once: exactly one wins.
TEST(EnrollmentConcurrencyTest, ExactlyOneOfTwoConcurrentRedemptionsWins) {
  TempDir dir;
  auto ca_a = open_ca(dir.path());
  auto ca_b = open_ca(dir.path());
  auto store_a = std::move(SqliteStore::open(dir / "tether.db")).value();
  auto store_b = std::move(SqliteStore::open(dir / "tether.db")).value();
  EnrollmentSettings settings;
  settings.server_url = "wss://127.0.0.1:8443";
  EnrollmentService a(*store_a, ca_a, settings);
  EnrollmentService b(*store_b, ca_b, settings);
  for (int round = 0; round < 5; ++round) {
    auto token = a.create_token(std::nullopt, "").value();
    const std::string secret = protocol::parse_enrollment_token(token.token).value().secret;
    auto key_a = make_device_key();
    auto key_b = make_device_key();
    std::atomic<bool> go{false};
    std::optional<Result<EnrollmentResult>> result_a;
    std::optional<Result<EnrollmentResult>> result_b;
    auto run = [&](EnrollmentService& service, const std::string& csr,
                   std::optional<Result<EnrollmentResult>>& out) {
      while (!go.load()) std::this_thread::yield();
      EnrollmentRequest req;
      req.secret = secret;
      req.csr_pem = csr;
      out = service.enroll(req);
    };
    std::thread ta(run, std::ref(a), key_a.csr, std::ref(result_a));
    std::thread tb(run, std::ref(b), key_b.csr, std::ref(result_b));
    go = true;
    ta.join();
    tb.join();
    ASSERT_TRUE(result_a && result_b);
    EXPECT_NE(result_a->ok(), result_b->ok()) << "round " << round;
    const auto& loser = result_a->ok() ? *result_b : *result_a;
    ASSERT_FALSE(loser.ok());
    EXPECT_EQ(loser.error().message, kUsedTokenMessage);
    const int enrolled = (store_a->find_device(key_a.id).value() ? 1 : 0) +
                         (store_a->find_device(key_b.id).value() ? 1 : 0);
    EXPECT_EQ(enrolled, 1);
  }
}

TEST(RateLimiterTest, RefillsAndBoundsItsMemory) {
  RateLimiter limiter(60, 4);
  const auto t0 = RateLimiter::Clock::now();
  for (int i = 0; i < 60; ++i) ASSERT_FALSE(limiter.take("a", t0).has_value());
  auto wait = limiter.take("a", t0);
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(wait->count(), 1);
  EXPECT_FALSE(limiter.take("a", t0 + 1s).has_value());
  for (int i = 0; i < 100; ++i) (void)limiter.take("source-" + std::to_string(i), t0 + 1s);
  EXPECT_LE(limiter.tracked_sources(), 4u);
}

}  // namespace
}  // namespace tether::server
