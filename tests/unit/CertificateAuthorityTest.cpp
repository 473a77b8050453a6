#include "server/CertificateAuthority.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <filesystem>

#include "ServerTestSupport.h"
#include "TempDir.h"
#include "common/FileIo.h"

namespace tether::server {
namespace {

using namespace std::chrono_literals;
using tether::server::testing::make_device_key;
using tether::server::testing::open_ca;
using tether::testing::mode_of;
using tether::testing::slurp;
using tether::testing::TempDir;

Result<CertificateAuthority> reopen(const std::string& dir, std::vector<std::string> names,
                                    CertificateAuthority::OpenReport* report = nullptr) {
  CertificateAuthorityOptions options;
  options.state_dir = dir;
  options.server_names = std::move(names);
  return CertificateAuthority::open(options, report);
}

TEST(CertificateAuthorityTest, FirstOpenCreatesFilesWithTheRightModes) {
  TempDir dir;
  const std::string state = dir / "state";
  CertificateAuthority::OpenReport report;
  auto ca = reopen(state, {"localhost", "127.0.0.1", "::1"}, &report);
  ASSERT_TRUE(ca.ok()) << ca.error().message;
  EXPECT_TRUE(report.created_ca);
  EXPECT_TRUE(report.issued_server_certificate);
  EXPECT_EQ(mode_of(state), 0700u);
  EXPECT_EQ(mode_of(state + "/ca.key"), 0600u);
  EXPECT_EQ(mode_of(state + "/server.key"), 0600u);
  EXPECT_EQ(mode_of(state + "/ca.crt"), 0644u);
  EXPECT_EQ(ca->ca_fingerprint(), pki::certificate_fingerprint(ca->ca_certificate()).value());
  EXPECT_EQ(ca->trusted_fingerprints(), std::vector<std::string>{ca->ca_fingerprint()});

  // server.crt: the leaf for these names, then the CA (devices pin it from the chain).
  auto chain = pki::certificates_from_pem(slurp(state + "/server.crt")).value();
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(pki::certificate_fingerprint(chain[1].get()).value(), ca->ca_fingerprint());
  EXPECT_TRUE(
      pki::verify_certificate(chain[0].get(), {}, ca->trusted(), pki::CertUsage::kServer).ok());
  auto info = pki::describe(chain[0].get()).value();
  EXPECT_EQ(normalized_alt_names(info.subject_alt_names),
            normalized_alt_names({"localhost", "127.0.0.1", "::1"}));
}

TEST(CertificateAuthorityTest, ReopeningKeepsEverythingAndReissuesOnlyForNewNames) {
  TempDir dir;
  const std::string fp = open_ca(dir.path()).ca_fingerprint();
  const std::string server_crt = slurp(dir / "server.crt");
  CertificateAuthority::OpenReport report;
  auto same = reopen(dir.path(), {"127.0.0.1", "LOCALHOST"}, &report);
  ASSERT_TRUE(same.ok()) << same.error().message;
  EXPECT_FALSE(report.created_ca);
  EXPECT_FALSE(report.issued_server_certificate);
  EXPECT_EQ(same->ca_fingerprint(), fp);
  EXPECT_EQ(slurp(dir / "server.crt"), server_crt);

  auto more = reopen(dir.path(), {"localhost", "127.0.0.1", "ums.example"}, &report);
  ASSERT_TRUE(more.ok()) << more.error().message;
  EXPECT_TRUE(report.issued_server_certificate);
  EXPECT_EQ(more->ca_fingerprint(), fp);
  auto leaf = pki::certificates_from_pem(slurp(dir / "server.crt")).value();
  auto names = pki::describe(leaf[0].get()).value().subject_alt_names;
  EXPECT_NE(std::find(names.begin(), names.end(), "DNS:ums.example"), names.end());
}

TEST(CertificateAuthorityTest, RefusesAKeyReadableByOthersNamingTheFile) {
  TempDir dir;
  (void)open_ca(dir.path());
  ASSERT_EQ(::chmod((dir / "ca.key").c_str(), 0644), 0);
  auto ca = reopen(dir.path(), {"localhost"});
  ASSERT_FALSE(ca.ok());
  EXPECT_NE(ca.error().message.find(dir / "ca.key"), std::string::npos) << ca.error().message;
  EXPECT_NE(ca.error().message.find("0644"), std::string::npos);
  EXPECT_EQ(ca.error().code, Errc::kPermissionDenied);
}

TEST(CertificateAuthorityTest, RefusesAKeyThatDoesNotMatchItsCertificate) {
  TempDir one;
  TempDir two;
  (void)open_ca(one.path());
  (void)open_ca(two.path());
  std::filesystem::copy_file(two / "ca.key", one / "ca.key",
                             std::filesystem::copy_options::overwrite_existing);
  auto ca = reopen(one.path(), {"localhost", "127.0.0.1"});
  ASSERT_FALSE(ca.ok());
  EXPECT_NE(ca.error().message.find("ca.key does not match"), std::string::npos)
      << ca.error().message;

  TempDir three;
  (void)open_ca(three.path());
  std::filesystem::copy_file(two / "server.key", three / "server.key",
                             std::filesystem::copy_options::overwrite_existing);
  auto server = reopen(three.path(), {"localhost", "127.0.0.1"});
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.error().message.find("server.key does not match"), std::string::npos)
      << server.error().message;
}

TEST(CertificateAuthorityTest, RefusesCorruptOrMissingFiles) {
  TempDir dir;
  (void)open_ca(dir.path());
  dir.write("ca.crt", "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n");
  auto corrupt = reopen(dir.path(), {"localhost"});
  ASSERT_FALSE(corrupt.ok());
  EXPECT_NE(corrupt.error().message.find("ca.crt is corrupt"), std::string::npos)
      << corrupt.error().message;
  ASSERT_EQ(::unlink((dir / "ca.crt").c_str()), 0);
  auto missing = reopen(dir.path(), {"localhost"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("ca.crt is missing"), std::string::npos);
}

TEST(CertificateAuthorityTest, DeviceCertificatesAreClientOnly) {
  TempDir dir;
  auto ca = open_ca(dir.path(), 90 * 24h);
  auto device = make_device_key();
  auto issued = ca.issue_device_certificate(device.csr);
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  EXPECT_EQ(issued->device_id, device.id);
  auto cert = pki::certificate_from_pem(issued->certificate_pem).value();
  EXPECT_TRUE(pki::verify_certificate(cert.get(), {}, ca.trusted(), pki::CertUsage::kClient).ok());
  EXPECT_FALSE(pki::verify_certificate(cert.get(), {}, ca.trusted(), pki::CertUsage::kServer).ok());
  auto info = pki::describe(cert.get()).value();
  EXPECT_EQ(info.common_name, device.id);
  EXPECT_EQ(info.spki_sha256, device.id);
  EXPECT_EQ(info.serial, issued->serial);
  EXPECT_EQ(info.not_after, issued->not_after);
  EXPECT_NEAR(static_cast<double>(info.not_after - std::time(nullptr)), 90.0 * 86400, 60);

  EXPECT_FALSE(ca.issue_device_certificate("not a csr").ok());
}

TEST(CertificateAuthorityTest, ShortLivedCertificatesAreBackdatedByATenthAtMost) {
  TempDir dir;
  auto ca = open_ca(dir.path(), 30s);
  auto issued = ca.issue_device_certificate(make_device_key().csr).value();
  auto info =
      pki::describe(pki::certificate_from_pem(issued.certificate_pem).value().get()).value();
  EXPECT_LE(info.not_after - info.not_before, 33);
  EXPECT_GE(info.not_after - info.not_before, 30);
}

TEST(CertificateAuthorityTest, TrustedCasFileExtendsTheTrustedSet) {
  TempDir other;
  auto other_ca = open_ca(other.path());
  TempDir dir;
  (void)open_ca(dir.path());
  dir.write("trusted-cas.pem", other_ca.ca_pem());
  auto ca = reopen(dir.path(), {"localhost", "127.0.0.1"});
  ASSERT_TRUE(ca.ok()) << ca.error().message;
  ASSERT_EQ(ca->trusted_fingerprints().size(), 2u);
  EXPECT_EQ(ca->trusted_fingerprints()[1], other_ca.ca_fingerprint());
  EXPECT_EQ(ca->trusted().size(), 2u);
  EXPECT_EQ(ca->trusted_pems()[1], other_ca.ca_pem());
}

}  // namespace
}  // namespace tether::server

// ---- the link certificate and gateway certificates ------------------------------------

namespace tether::server {
namespace {

TEST(CertificateAuthorityLinkTest, OpenMakesAClientOnlyLinkCertificate) {
  TempDir dir;
  CertificateAuthority::OpenReport report;
  auto ca = reopen(dir.path(), {"localhost"}, &report);
  ASSERT_TRUE(ca.ok()) << ca.error().message;
  EXPECT_TRUE(report.issued_link_certificate);
  EXPECT_EQ(ca->link_key_path(), dir / "link.key");
  EXPECT_EQ(ca->link_certificate_path(), dir / "link.crt");
  EXPECT_EQ(mode_of(dir / "link.key"), 0600u);

  auto chain = pki::certificates_from_pem(slurp(dir / "link.crt")).value();
  ASSERT_EQ(chain.size(), 2u) << "the leaf, then the CA";
  EXPECT_EQ(pki::certificate_fingerprint(chain[1].get()).value(), ca->ca_fingerprint());
  auto key = pki::private_key_from_pem(slurp(dir / "link.key")).value();
  EXPECT_TRUE(pki::key_matches_certificate(key.get(), chain[0].get()));
  auto info = pki::describe(chain[0].get()).value();
  EXPECT_EQ(info.common_name, kServerLinkCommonName);
  EXPECT_EQ(info.extended_key_usage, std::vector<std::string>{"clientAuth"});
  EXPECT_FALSE(info.is_ca);
  EXPECT_TRUE(
      pki::verify_certificate(chain[0].get(), {}, ca->trusted(), pki::CertUsage::kClient).ok());
  EXPECT_FALSE(
      pki::verify_certificate(chain[0].get(), {}, ca->trusted(), pki::CertUsage::kServer).ok());
}

TEST(CertificateAuthorityLinkTest, ReopeningKeepsTheLinkCertificate) {
  TempDir dir;
  (void)open_ca(dir.path());
  const std::string crt = slurp(dir / "link.crt");
  const std::string key = slurp(dir / "link.key");
  CertificateAuthority::OpenReport report;
  ASSERT_TRUE(reopen(dir.path(), {"localhost", "127.0.0.1"}, &report).ok());
  EXPECT_FALSE(report.issued_link_certificate) << report.link_certificate_reason;
  EXPECT_EQ(slurp(dir / "link.crt"), crt);
  EXPECT_EQ(slurp(dir / "link.key"), key);
}

TEST(CertificateAuthorityLinkTest, ALinkCertificateNearItsEndIsIssuedAgainWithTheSameKey) {
  TempDir dir;
  (void)open_ca(dir.path());
  // A link certificate of this CA that ends within the renewal margin.
  auto ca_key = pki::private_key_from_pem(slurp(dir / "ca.key")).value();
  auto ca_cert = pki::certificate_from_pem(slurp(dir / "ca.crt")).value();
  auto key = pki::private_key_from_pem(slurp(dir / "link.key")).value();
  pki::CertificateRequest req;
  req.common_name = kServerLinkCommonName;
  req.usage = pki::CertUsage::kClient;
  req.lifetime = 1h;
  auto short_lived = pki::issue_certificate(key.get(), req, ca_cert.get(), ca_key.get()).value();
  ASSERT_TRUE(write_file_atomic(
                  dir / "link.crt",
                  pki::certificate_to_pem(short_lived.get()).value() + slurp(dir / "ca.crt"), 0644)
                  .ok());

  CertificateAuthority::OpenReport report;
  ASSERT_TRUE(reopen(dir.path(), {"localhost", "127.0.0.1"}, &report).ok());
  EXPECT_TRUE(report.issued_link_certificate);
  EXPECT_EQ(report.link_certificate_reason, "it expires soon");
  auto renewed = pki::certificates_from_pem(slurp(dir / "link.crt")).value();
  EXPECT_GT(pki::describe(renewed[0].get()).value().not_after, std::time(nullptr) + 86400);
  EXPECT_TRUE(pki::key_matches_certificate(key.get(), renewed[0].get()));
}

TEST(CertificateAuthorityLinkTest, AnotherCertificateInPlaceOfTheLinkCertificateIsReplaced) {
  TempDir dir;
  (void)open_ca(dir.path());
  std::filesystem::copy_file(dir / "server.crt", dir / "link.crt",
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(dir / "server.key", dir / "link.key",
                             std::filesystem::copy_options::overwrite_existing);
  CertificateAuthority::OpenReport report;
  ASSERT_TRUE(reopen(dir.path(), {"localhost", "127.0.0.1"}, &report).ok());
  EXPECT_EQ(report.link_certificate_reason, "it is not a link certificate");
  auto chain = pki::certificates_from_pem(slurp(dir / "link.crt")).value();
  EXPECT_EQ(pki::describe(chain[0].get()).value().common_name, kServerLinkCommonName);
}

TEST(CertificateAuthorityLinkTest, ALinkKeyReadableByOthersIsRefused) {
  TempDir dir;
  (void)open_ca(dir.path());
  ASSERT_EQ(::chmod((dir / "link.key").c_str(), 0644), 0);
  auto ca = reopen(dir.path(), {"localhost", "127.0.0.1"});
  ASSERT_FALSE(ca.ok());
  EXPECT_NE(ca.error().message.find("link.key"), std::string::npos) << ca.error().message;
}

TEST(CertificateAuthorityGatewayTest, GatewayCertificatesAreServerCertificatesForTheUrlHost) {
  TempDir dir;
  auto ca = open_ca(dir.path());
  auto device = make_device_key();
  for (const std::string host : {"gw.example.org", "192.0.2.5", "::1"}) {
    auto issued = ca.issue_gateway_certificate(device.csr, "branch-1", host);
    ASSERT_TRUE(issued.ok()) << issued.error().message;
    auto cert = pki::certificate_from_pem(issued->certificate_pem).value();
    auto info = pki::describe(cert.get()).value();
    EXPECT_EQ(info.common_name, "tether-gateway branch-1");
    EXPECT_EQ(normalized_alt_names(info.subject_alt_names), normalized_alt_names({host}));
    EXPECT_FALSE(info.is_ca);
    EXPECT_TRUE(pki::key_matches_certificate(device.key.get(), cert.get()));
    EXPECT_TRUE(
        pki::verify_certificate(cert.get(), {}, ca.trusted(), pki::CertUsage::kServer).ok());
    EXPECT_EQ(issued->not_after, info.not_after);
  }
}

TEST(CertificateAuthorityGatewayTest, LongNamesAreCutAndBadRequestsRefused) {
  TempDir dir;
  auto ca = open_ca(dir.path());
  auto device = make_device_key();
  auto issued = ca.issue_gateway_certificate(device.csr, std::string(60, 'g'), "gw.example");
  ASSERT_TRUE(issued.ok()) << issued.error().message;
  auto cert = pki::certificate_from_pem(issued->certificate_pem).value();
  EXPECT_EQ(pki::describe(cert.get()).value().common_name.size(), 64u);

  auto bad = ca.issue_gateway_certificate("not a CSR", "branch-1", "gw.example");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::kBadValue);
  bad = ca.issue_gateway_certificate(device.csr, "branch-1", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::kBadValue);
}

}  // namespace
}  // namespace tether::server
