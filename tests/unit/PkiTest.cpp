#include "platform/Pki.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "common/Hex.h"
#include "tests/unit/Subprocess.h"

namespace tether::pki {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

struct KeyAndCert {
  ssl::PkeyPtr key;
  ssl::X509Ptr cert;
};

ssl::PkeyPtr new_key() {
  auto key = generate_p256_key();
  EXPECT_TRUE(key.ok());
  return key.ok() ? std::move(key).value() : nullptr;
}

KeyAndCert make_ca(const std::string& cn = "Test CA") {
  KeyAndCert ca{new_key(), nullptr};
  CertificateRequest req;
  req.common_name = cn;
  req.usage = CertUsage::kCa;
  req.lifetime = std::chrono::hours(24 * 365 * 10);
  auto cert = make_self_signed(ca.key.get(), req);
  EXPECT_TRUE(cert.ok()) << cert.error().message;
  if (cert.ok()) ca.cert = std::move(cert).value();
  return ca;
}

KeyAndCert issue(const KeyAndCert& ca, CertUsage usage, const std::string& cn,
                 std::chrono::seconds lifetime = std::chrono::hours(24 * 365),
                 std::vector<std::string> dns = {}, std::vector<std::string> ips = {}) {
  KeyAndCert out{new_key(), nullptr};
  CertificateRequest req;
  req.common_name = cn;
  req.usage = usage;
  req.lifetime = lifetime;
  req.dns_names = std::move(dns);
  req.ip_addresses = std::move(ips);
  auto cert = issue_certificate(out.key.get(), req, ca.cert.get(), ca.key.get());
  EXPECT_TRUE(cert.ok()) << cert.error().message;
  if (cert.ok()) out.cert = std::move(cert).value();
  return out;
}

std::string sha256_hex(const unsigned char* data, std::size_t len) {
  unsigned char md[32];
  unsigned int md_len = 0;
  EXPECT_EQ(EVP_Digest(data, len, md, &md_len, EVP_sha256(), nullptr), 1);
  return hex_encode(std::span<const std::uint8_t>(md, md_len));
}

std::string group_of(EVP_PKEY* key) {
  char group[64] = {0};
  std::size_t len = 0;
  EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len);
  return group;
}

// The DER body of a PEM block (any type).
std::vector<std::uint8_t> pem_body(const std::string& pem) {
  ssl::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* data = nullptr;
  long len = 0;
  std::vector<std::uint8_t> out;
  if (PEM_read_bio(bio.get(), &name, &header, &data, &len) == 1) out.assign(data, data + len);
  OPENSSL_free(name);
  OPENSSL_free(header);
  OPENSSL_free(data);
  return out;
}

std::string to_pem(const char* name, const std::vector<std::uint8_t>& der) {
  ssl::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio(bio.get(), name, "", der.data(), static_cast<long>(der.size()));
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

std::string pem_of(X509* cert) {
  auto pem = certificate_to_pem(cert);
  EXPECT_TRUE(pem.ok());
  return pem.ok() ? *pem : "";
}

void expect_clean_error_queue() {
  EXPECT_EQ(ERR_peek_error(), 0UL) << "an OpenSSL error was left in the thread's queue";
  ERR_clear_error();
}

// ---------------------------------------------------------------- keys

TEST(PkiTest, GeneratesDistinctP256Keys) {
  auto a = new_key();
  auto b = new_key();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(EVP_PKEY_get_base_id(a.get()), EVP_PKEY_EC);
  EXPECT_EQ(group_of(a.get()), "prime256v1");
  EXPECT_EQ(EVP_PKEY_get_bits(a.get()), 256);
  EXPECT_NE(EVP_PKEY_eq(a.get(), b.get()), 1);
}

TEST(PkiTest, PrivateKeyPemRoundTrips) {
  auto key = new_key();
  auto pem = private_key_to_pem(key.get());
  ASSERT_TRUE(pem.ok()) << pem.error().message;
  EXPECT_THAT(*pem, StartsWith("-----BEGIN PRIVATE KEY-----\n"));
  auto back = private_key_from_pem(*pem);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(EVP_PKEY_eq(key.get(), back->get()), 1);
  EXPECT_EQ(*private_key_to_pem(back->get()), *pem);
  expect_clean_error_queue();
}

TEST(PkiTest, PrivateKeyFromPemRejectsOtherInput) {
  auto key = new_key();
  ssl::BioPtr bio(BIO_new(BIO_s_mem()));
  ASSERT_EQ(PEM_write_bio_PUBKEY(bio.get(), key.get()), 1);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  const std::string public_pem(data, static_cast<std::size_t>(len));
  const auto ca = make_ca();

  for (const std::string& bad :
       {std::string(""), std::string("garbage"), public_pem, pem_of(ca.cert.get()),
        std::string("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}) {
    auto r = private_key_from_pem(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::kCrypto);
    EXPECT_THAT(r.error().message, HasSubstr("private key"));
    expect_clean_error_queue();
  }
  EXPECT_EQ(private_key_from_pem(std::string(100 * 1024, 'A')).error().code, Errc::kTooLarge);
}

std::string encrypted_key_pem(EVP_PKEY* key, const std::string& passphrase) {
  ssl::BioPtr bio(BIO_new(BIO_s_mem()));
  EXPECT_EQ(PEM_write_bio_PrivateKey(bio.get(), key, EVP_aes_256_cbc(),
                                     reinterpret_cast<const unsigned char*>(passphrase.data()),
                                     static_cast<int>(passphrase.size()), nullptr, nullptr),
            1);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

TEST(PkiTest, EncryptedPrivateKeyIsRefused) {
  auto key = new_key();
  const std::string pem = encrypted_key_pem(key.get(), "correct horse");
  ASSERT_THAT(pem, StartsWith("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
  auto r = private_key_from_pem(pem);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kCrypto);
  expect_clean_error_queue();
}

TEST(PkiTest, EncryptedPrivateKeyNeverPromptsOnTheTerminal) {
  // Library code must not read a passphrase from the controlling terminal (a daemon has none;
  // a CLI would hang or take typed input). The child runs with a pseudo-terminal as its
  // controlling terminal, and the passphrase is already waiting there: the key must still be
  // refused, and nothing must be asked.
  auto key = new_key();
  const std::string passphrase = "correct horse";
  const std::string pem = encrypted_key_pem(key.get(), passphrase);
  int master = -1;
  std::fflush(nullptr);
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(20);
    auto r = private_key_from_pem(pem);
    ::_exit(r.ok() ? 1 : 0);
  }
  const std::string typed = passphrase + "\n";
  ASSERT_EQ(::write(master, typed.data(), typed.size()), static_cast<ssize_t>(typed.size()));
  // Collect whatever the child writes to the terminal until it exits (EIO on Linux then).
  std::string shown;
  char buf[256];
  while (true) {
    const ssize_t n = ::read(master, buf, sizeof buf);
    if (n <= 0) break;
    shown.append(buf, static_cast<std::size_t>(n));
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ::close(master);
  ASSERT_TRUE(WIFEXITED(status)) << "the child hung or crashed";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the key was decrypted with a passphrase read from the tty";
  EXPECT_THAT(shown, ::testing::Not(HasSubstr("pass phrase")));
}

TEST(PkiTest, SpkiSha256IsStableAndPerKey) {
  auto a = new_key();
  auto b = new_key();
  auto a1 = spki_sha256(a.get());
  auto a2 = spki_sha256(a.get());
  auto b1 = spki_sha256(b.get());
  ASSERT_TRUE(a1.ok() && a2.ok() && b1.ok());
  EXPECT_EQ(*a1, *a2);
  EXPECT_NE(*a1, *b1);
  // The same public key reloaded from PEM has the same id.
  auto reloaded = private_key_from_pem(*private_key_to_pem(a.get()));
  ASSERT_TRUE(reloaded.ok());
  EXPECT_EQ(*spki_sha256(reloaded->get()), *a1);
  EXPECT_EQ(to_hex(*a1).size(), 64u);
  EXPECT_TRUE(is_lower_hex(to_hex(*a1)));
}

TEST(PkiTest, SpkiSha256IsTheHashOfTheDerSubjectPublicKeyInfo) {
  auto key = new_key();
  auto id = spki_sha256(key.get());
  ASSERT_TRUE(id.ok());
  // Second way in-process: the PUBLIC KEY PEM's body is the DER SubjectPublicKeyInfo.
  ssl::BioPtr bio(BIO_new(BIO_s_mem()));
  ASSERT_EQ(PEM_write_bio_PUBKEY(bio.get(), key.get()), 1);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  const auto der = pem_body(std::string(data, static_cast<std::size_t>(len)));
  ASSERT_FALSE(der.empty());
  EXPECT_EQ(der.size(), 91u) << "a P-256 SubjectPublicKeyInfo is 91 bytes";
  EXPECT_EQ(to_hex(*id), sha256_hex(der.data(), der.size()));
}

TEST(PkiTest, SpkiSha256MatchesTheOpensslCli) {
  const auto openssl = testing::find_program("openssl");
  if (!openssl) GTEST_SKIP() << "no openssl CLI";
  auto key = new_key();
  auto id = spki_sha256(key.get());
  ASSERT_TRUE(id.ok());
  auto result = testing::run_command({*openssl, "pkey", "-pubout", "-outform", "DER"},
                                     *private_key_to_pem(key.get()));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(to_hex(*id), sha256_hex(reinterpret_cast<const unsigned char*>(result.output.data()),
                                    result.output.size()));
}

TEST(PkiTest, ToHexIsLowerCase) {
  Sha256 d{};
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<std::uint8_t>(i * 8 + 7);
  EXPECT_EQ(to_hex(d), "070f171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7ff");
}

// ---------------------------------------------------------------- certificates

TEST(PkiTest, CertificatePemRoundTrips) {
  const auto ca = make_ca();
  const std::string pem = pem_of(ca.cert.get());
  EXPECT_THAT(pem, StartsWith("-----BEGIN CERTIFICATE-----\n"));
  auto back = certificate_from_pem(pem);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(X509_cmp(back->get(), ca.cert.get()), 0);
  EXPECT_EQ(pem_of(back->get()), pem);
  for (const std::string& bad :
       {std::string(""), std::string("junk"), *private_key_to_pem(ca.key.get())}) {
    auto r = certificate_from_pem(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::kCrypto);
    expect_clean_error_queue();
  }
}

TEST(PkiTest, CertificatesFromPemReadsBundlesInOrder) {
  const auto ca = make_ca();
  const auto server = issue(ca, CertUsage::kServer, "server");
  const auto client = issue(ca, CertUsage::kClient, "client");
  const std::string bundle = "# installation CAs\n" + pem_of(server.cert.get()) + "\n" +
                             pem_of(ca.cert.get()) + "some words\n" + pem_of(client.cert.get());
  auto certs = certificates_from_pem(bundle);
  ASSERT_TRUE(certs.ok()) << certs.error().message;
  ASSERT_EQ(certs->size(), 3u);
  EXPECT_EQ(X509_cmp((*certs)[0].get(), server.cert.get()), 0);
  EXPECT_EQ(X509_cmp((*certs)[1].get(), ca.cert.get()), 0);
  EXPECT_EQ(X509_cmp((*certs)[2].get(), client.cert.get()), 0);
  expect_clean_error_queue();

  auto one = certificates_from_pem(pem_of(ca.cert.get()));
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->size(), 1u);
  // Other PEM blocks (keys) are skipped.
  auto with_key = certificates_from_pem(*private_key_to_pem(ca.key.get()) + pem_of(ca.cert.get()));
  ASSERT_TRUE(with_key.ok()) << with_key.error().message;
  EXPECT_EQ(with_key->size(), 1u);
  expect_clean_error_queue();
}

TEST(PkiTest, CertificatesFromPemRejectsEmptyAndGarbage) {
  const auto ca = make_ca();
  for (const std::string& bad : {std::string(""), std::string("garbage\n"), std::string("\n\n"),
                                 *private_key_to_pem(ca.key.get())}) {
    auto r = certificates_from_pem(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::kCrypto);
    EXPECT_THAT(r.error().message, HasSubstr("no certificate"));
    expect_clean_error_queue();
  }
}

TEST(PkiTest, CertificatesFromPemRejectsACorruptMember) {
  const auto ca = make_ca();
  std::string good = pem_of(ca.cert.get());
  std::string damaged = good;
  damaged[good.size() / 2] = '!';
  auto r = certificates_from_pem(good + damaged);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kCrypto);
  EXPECT_THAT(r.error().message, HasSubstr("corrupt"));
  expect_clean_error_queue();

  const std::string truncated = good + good.substr(0, good.size() - 30);
  EXPECT_FALSE(certificates_from_pem(truncated).ok());
  expect_clean_error_queue();
}

TEST(PkiTest, CertificatesFromPemLimitsTheCount) {
  const auto ca = make_ca();
  const std::string pem = pem_of(ca.cert.get());
  std::string bundle;
  for (int i = 0; i < 32; ++i) bundle += pem;
  auto ok = certificates_from_pem(bundle);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->size(), 32u);
  auto too_many = certificates_from_pem(bundle + pem);
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.error().code, Errc::kTooLarge);
  expect_clean_error_queue();
}

TEST(PkiTest, FingerprintIsSha256OfTheDer) {
  const auto ca = make_ca();
  auto fp = certificate_fingerprint(ca.cert.get());
  ASSERT_TRUE(fp.ok());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  ASSERT_EQ(X509_digest(ca.cert.get(), EVP_sha256(), md, &len), 1);
  EXPECT_EQ(*fp, hex_encode(std::span<const std::uint8_t>(md, len)));
  unsigned char* der = nullptr;
  const int der_len = i2d_X509(ca.cert.get(), &der);
  ASSERT_GT(der_len, 0);
  EXPECT_EQ(*fp, sha256_hex(der, static_cast<std::size_t>(der_len)));
  OPENSSL_free(der);
  EXPECT_EQ(fp->size(), 64u);
  EXPECT_TRUE(is_lower_hex(*fp));
  EXPECT_NE(*fp, *certificate_fingerprint(make_ca().cert.get()));
}

TEST(PkiTest, FingerprintMatchesTheOpensslCli) {
  const auto openssl = testing::find_program("openssl");
  if (!openssl) GTEST_SKIP() << "no openssl CLI";
  const auto ca = make_ca();
  auto result = testing::run_command({*openssl, "x509", "-noout", "-fingerprint", "-sha256"},
                                     pem_of(ca.cert.get()));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  // "sha256 Fingerprint=AB:CD:..." (the prefix's case varies between versions)
  const auto eq = result.output.find('=');
  ASSERT_NE(eq, std::string::npos) << result.output;
  std::string hex;
  for (char c : result.output.substr(eq + 1)) {
    if (std::isxdigit(static_cast<unsigned char>(c))) {
      hex.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
  }
  EXPECT_EQ(*certificate_fingerprint(ca.cert.get()), hex);
}

TEST(PkiTest, DescribesASelfSignedCa) {
  const std::time_t before = std::time(nullptr);
  const auto ca = make_ca("Tether Installation CA");
  const std::time_t after = std::time(nullptr);
  auto info = describe(ca.cert.get());
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->common_name, "Tether Installation CA");
  EXPECT_EQ(info->subject, "CN=Tether Installation CA");
  EXPECT_EQ(info->issuer, "CN=Tether Installation CA");
  EXPECT_TRUE(info->is_ca);
  EXPECT_TRUE(info->self_signed);
  EXPECT_THAT(info->subject_alt_names, IsEmpty());
  EXPECT_THAT(info->extended_key_usage, IsEmpty());
  EXPECT_EQ(info->public_key, "EC P-256");
  EXPECT_EQ(info->spki_sha256, to_hex(*spki_sha256(ca.key.get())));
  EXPECT_EQ(info->fingerprint, *certificate_fingerprint(ca.cert.get()));
  // Validity: from five minutes before issuing, for the requested lifetime.
  const std::time_t ten_years = 10LL * 365 * 24 * 3600;
  EXPECT_GE(info->not_before, before - 300);
  EXPECT_LE(info->not_before, after - 300);
  EXPECT_GE(info->not_after, before + ten_years);
  EXPECT_LE(info->not_after, after + ten_years);
  // Serial: positive, random, lower-case hex without leading zeros.
  EXPECT_FALSE(info->serial.empty());
  EXPECT_LE(info->serial.size(), 32u);
  EXPECT_NE(info->serial.front(), '0');
  EXPECT_TRUE(std::all_of(info->serial.begin(), info->serial.end(), [](char c) {
    return std::isdigit(c) || (c >= 'a' && c <= 'f');
  })) << info->serial;
  EXPECT_NE(info->serial, describe(make_ca().cert.get())->serial);
}

TEST(PkiTest, DescribesAnIssuedServerCertificate) {
  const auto ca = make_ca();
  const std::time_t before = std::time(nullptr);
  const auto server = issue(ca, CertUsage::kServer, "tether.example", std::chrono::hours(48),
                            {"tether.example", "alt.example"}, {"127.0.0.1", "::1"});
  const std::time_t after = std::time(nullptr);
  auto info = describe(server.cert.get());
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->common_name, "tether.example");
  EXPECT_EQ(info->subject, "CN=tether.example");
  EXPECT_EQ(info->issuer, "CN=Test CA");
  EXPECT_FALSE(info->is_ca);
  EXPECT_FALSE(info->self_signed);
  EXPECT_THAT(info->extended_key_usage, ElementsAre("serverAuth", "clientAuth"));
  ASSERT_EQ(info->subject_alt_names.size(), 4u);
  EXPECT_EQ(info->subject_alt_names[0], "DNS:tether.example");
  EXPECT_EQ(info->subject_alt_names[1], "DNS:alt.example");
  EXPECT_EQ(info->subject_alt_names[2], "IP:127.0.0.1");
  ASSERT_THAT(info->subject_alt_names[3], StartsWith("IP:"));
  in6_addr shown{};
  in6_addr loopback{};
  ASSERT_EQ(::inet_pton(AF_INET6, info->subject_alt_names[3].c_str() + 3, &shown), 1)
      << info->subject_alt_names[3];
  ASSERT_EQ(::inet_pton(AF_INET6, "::1", &loopback), 1);
  EXPECT_EQ(std::memcmp(&shown, &loopback, sizeof shown), 0) << info->subject_alt_names[3];
  EXPECT_GE(info->not_before, before - 300);
  EXPECT_LE(info->not_before, after - 300);
  EXPECT_GE(info->not_after, before + 48 * 3600);
  EXPECT_LE(info->not_after, after + 48 * 3600);
  EXPECT_EQ(info->spki_sha256, to_hex(*spki_sha256(server.key.get())));
}

TEST(PkiTest, DescribesAClientCertificate) {
  const auto ca = make_ca();
  const auto client = issue(ca, CertUsage::kClient, "device-1");
  auto info = describe(client.cert.get());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->common_name, "device-1");
  EXPECT_THAT(info->extended_key_usage, ElementsAre("clientAuth"));
  EXPECT_THAT(info->subject_alt_names, IsEmpty());
  EXPECT_FALSE(info->is_ca);
}

TEST(PkiTest, DescribesASelfSignedLeafAsSelfSigned) {
  auto key = new_key();
  CertificateRequest req;
  req.common_name = "standalone";
  req.usage = CertUsage::kServer;
  req.dns_names = {"standalone.example"};
  auto cert = make_self_signed(key.get(), req);
  ASSERT_TRUE(cert.ok()) << cert.error().message;
  auto info = describe(cert->get());
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->self_signed);
  EXPECT_FALSE(info->is_ca);
  EXPECT_EQ(info->subject, info->issuer);
  expect_clean_error_queue();
}

TEST(PkiTest, DescribesOtherKeyTypes) {
  ssl::PkeyPtr rsa(EVP_RSA_gen(2048));
  ssl::PkeyPtr p384(EVP_EC_gen("P-384"));
  ASSERT_TRUE(rsa && p384);
  CertificateRequest req;
  req.common_name = "other";
  auto rsa_cert = make_self_signed(rsa.get(), req);
  auto p384_cert = make_self_signed(p384.get(), req);
  ASSERT_TRUE(rsa_cert.ok() && p384_cert.ok());
  EXPECT_EQ(describe(rsa_cert->get())->public_key, "RSA 2048 bits");
  EXPECT_EQ(describe(p384_cert->get())->public_key, "EC secp384r1");
}

TEST(PkiTest, KeyMatchesOnlyItsOwnCertificate) {
  const auto ca = make_ca();
  const auto client = issue(ca, CertUsage::kClient, "device-1");
  EXPECT_TRUE(key_matches_certificate(ca.key.get(), ca.cert.get()));
  EXPECT_TRUE(key_matches_certificate(client.key.get(), client.cert.get()));
  EXPECT_FALSE(key_matches_certificate(ca.key.get(), client.cert.get()));
  EXPECT_FALSE(key_matches_certificate(client.key.get(), ca.cert.get()));
  auto reloaded = private_key_from_pem(*private_key_to_pem(client.key.get()));
  EXPECT_TRUE(key_matches_certificate(reloaded->get(), client.cert.get()));
  expect_clean_error_queue();
}

TEST(PkiTest, IssuingNeedsTheIssuersOwnKey) {
  const auto ca = make_ca();
  auto other = new_key();
  auto subject = new_key();
  CertificateRequest req;
  req.common_name = "x";
  auto r = issue_certificate(subject.get(), req, ca.cert.get(), other.get());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
}

TEST(PkiTest, CommonNameMustBeOneToSixtyFourBytes) {
  auto key = new_key();
  CertificateRequest req;
  req.common_name = "";
  EXPECT_EQ(make_self_signed(key.get(), req).error().code, Errc::kInvalidArgument);
  req.common_name = std::string(65, 'c');
  EXPECT_EQ(make_self_signed(key.get(), req).error().code, Errc::kInvalidArgument);
  req.common_name = std::string(64, 'c');
  EXPECT_TRUE(make_self_signed(key.get(), req).ok());
}

TEST(PkiTest, SubjectAltNamesCannotSmuggleExtraEntries) {
  // Names are joined into OpenSSL's "DNS:a,IP:b" configuration syntax; a name containing a
  // comma must not add an entry of its own choosing (nor a NUL drop the ones after it).
  const auto ca = make_ca();
  auto key = new_key();
  auto attempt = [&](std::vector<std::string> dns, std::vector<std::string> ips) {
    CertificateRequest req;
    req.common_name = "device";
    req.usage = CertUsage::kServer;
    req.dns_names = std::move(dns);
    req.ip_addresses = std::move(ips);
    return issue_certificate(key.get(), req, ca.cert.get(), ca.key.get());
  };
  for (const auto& [dns, ips] :
       std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>>{
           {{"a.example,IP:10.9.9.9"}, {}},
           {{}, {"10.0.0.1,DNS:evil.example"}},
           {{"a.example, DNS:evil.example"}, {}},
           {{""}, {}},
           {{"a b.example"}, {}},
           {{std::string("a.example\0,IP:1.2.3.4", 21)}, {}},
           {{}, {std::string("10.0.0.1\0", 9), "10.0.0.2"}},
           {{}, {"not-an-address"}},
           {{}, {"10.0.0.256"}},
           {{}, {"fe80::1%eth0"}},
       }) {
    auto cert = attempt(dns, ips);
    ASSERT_FALSE(cert.ok()) << (dns.empty() ? ips.front() : dns.front());
    EXPECT_EQ(cert.error().code, Errc::kInvalidArgument);
    expect_clean_error_queue();
  }
  auto fine = attempt({"*.example.com", "Host-1.Example"}, {"10.0.0.1", "2001:db8::1"});
  ASSERT_TRUE(fine.ok()) << fine.error().message;
  EXPECT_EQ(describe(fine->get())->subject_alt_names.size(), 4u);
}

// ---------------------------------------------------------------- verification

TEST(PkiTest, VerifiesCertificatesForTheirUsage) {
  const auto ca = make_ca();
  const auto server = issue(ca, CertUsage::kServer, "server");
  const auto client = issue(ca, CertUsage::kClient, "device");
  EXPECT_TRUE(verify_certificate(server.cert.get(), {}, {ca.cert.get()}, CertUsage::kServer).ok());
  EXPECT_TRUE(verify_certificate(client.cert.get(), {}, {ca.cert.get()}, CertUsage::kClient).ok());
  // Gateways connect out with their server certificate: it is good for clientAuth too.
  EXPECT_TRUE(verify_certificate(server.cert.get(), {}, {ca.cert.get()}, CertUsage::kClient).ok());
  EXPECT_TRUE(verify_certificate(ca.cert.get(), {}, {ca.cert.get()}, CertUsage::kCa).ok());
  expect_clean_error_queue();
}

TEST(PkiTest, ClientCertificateCannotPoseAsServer) {
  const auto ca = make_ca();
  const auto client = issue(ca, CertUsage::kClient, "device");
  auto st = verify_certificate(client.cert.get(), {}, {ca.cert.get()}, CertUsage::kServer);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kUnauthenticated);
  EXPECT_THAT(st.error().message, HasSubstr("purpose"));
  expect_clean_error_queue();
}

TEST(PkiTest, UntrustedCaIsRefused) {
  const auto ca = make_ca();
  const auto other = make_ca("Other CA");
  const auto server = issue(ca, CertUsage::kServer, "server");
  auto st = verify_certificate(server.cert.get(), {}, {other.cert.get()}, CertUsage::kServer);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kUnauthenticated);
  EXPECT_THAT(st.error().message, HasSubstr("issuer"));
  // Same name, different key: still refused.
  const auto impostor = make_ca("Test CA");
  EXPECT_FALSE(
      verify_certificate(server.cert.get(), {}, {impostor.cert.get()}, CertUsage::kServer).ok());
  EXPECT_FALSE(verify_certificate(server.cert.get(), {}, {}, CertUsage::kServer).ok());
  // Trusting the leaf itself does not make it a trust anchor.
  EXPECT_FALSE(
      verify_certificate(server.cert.get(), {}, {server.cert.get()}, CertUsage::kServer).ok());
  expect_clean_error_queue();
}

TEST(PkiTest, TamperedCertificateIsRefused) {
  const auto ca = make_ca();
  auto server = issue(ca, CertUsage::kServer, "server");
  auto der = pem_body(pem_of(server.cert.get()));
  const std::string cn = "server";
  auto at = std::search(der.begin(), der.end(), cn.begin(), cn.end());
  ASSERT_NE(at, der.end());
  *at = 'S';
  auto tampered = certificate_from_pem(to_pem("CERTIFICATE", der));
  ASSERT_TRUE(tampered.ok()) << tampered.error().message;
  auto st = verify_certificate(tampered->get(), {}, {ca.cert.get()}, CertUsage::kServer);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kUnauthenticated);
  EXPECT_THAT(st.error().message, HasSubstr("signature"));
  expect_clean_error_queue();
}

TEST(PkiTest, ExpiredCertificateIsRefused) {
  const auto ca = make_ca();
  const auto client = issue(ca, CertUsage::kClient, "device", std::chrono::hours(1));
  const std::time_t now = std::time(nullptr);
  EXPECT_TRUE(
      verify_certificate(client.cert.get(), {}, {ca.cert.get()}, CertUsage::kClient, now).ok());
  auto st = verify_certificate(client.cert.get(), {}, {ca.cert.get()}, CertUsage::kClient,
                               now + 2 * 3600);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kUnauthenticated);
  EXPECT_THAT(st.error().message, HasSubstr("expired"));
  // An expired CA makes everything under it fail too.
  auto ca_expired = verify_certificate(client.cert.get(), {}, {ca.cert.get()}, CertUsage::kClient,
                                       now + 11LL * 365 * 24 * 3600);
  EXPECT_FALSE(ca_expired.ok());
  expect_clean_error_queue();
}

TEST(PkiTest, NotYetValidCertificateIsRefused) {
  const auto ca = make_ca();
  auto client = issue(ca, CertUsage::kClient, "device");
  const std::time_t now = std::time(nullptr);
  // Before the CA and the certificate were made.
  auto early = verify_certificate(client.cert.get(), {}, {ca.cert.get()}, CertUsage::kClient,
                                  now - 24 * 3600);
  ASSERT_FALSE(early.ok());
  EXPECT_THAT(early.error().message, HasSubstr("not yet valid"));

  // A certificate whose validity starts in an hour (re-signed by the CA after the change).
  ASSERT_NE(X509_gmtime_adj(X509_getm_notBefore(client.cert.get()), 3600), nullptr);
  ASSERT_GT(X509_sign(client.cert.get(), ca.key.get(), EVP_sha256()), 0);
  auto st = verify_certificate(client.cert.get(), {}, {ca.cert.get()}, CertUsage::kClient);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kUnauthenticated);
  EXPECT_THAT(st.error().message, HasSubstr("not yet valid"));
  EXPECT_TRUE(
      verify_certificate(client.cert.get(), {}, {ca.cert.get()}, CertUsage::kClient, now + 2 * 3600)
          .ok());
  expect_clean_error_queue();
}

TEST(PkiTest, CaCannotIssueIntermediateCas) {
  // The installation CA has pathlen:0: a CA certificate it issues cannot issue in turn.
  const auto root = make_ca();
  const auto sub = issue(root, CertUsage::kCa, "Sub CA");
  const auto leaf = issue(sub, CertUsage::kServer, "server");
  auto info = describe(sub.cert.get());
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->is_ca);
  EXPECT_TRUE(verify_certificate(sub.cert.get(), {}, {root.cert.get()}, CertUsage::kCa).ok());
  auto st =
      verify_certificate(leaf.cert.get(), {sub.cert.get()}, {root.cert.get()}, CertUsage::kServer);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr("path length"));
  expect_clean_error_queue();
}

// ---------------------------------------------------------------- CSRs

TEST(PkiTest, CsrRoundTripsThePublicKey) {
  auto key = new_key();
  auto csr = make_csr_pem(key.get(), "device-1");
  ASSERT_TRUE(csr.ok()) << csr.error().message;
  EXPECT_THAT(*csr, StartsWith("-----BEGIN CERTIFICATE REQUEST-----\n"));
  auto pub = public_key_from_csr(*csr);
  ASSERT_TRUE(pub.ok()) << pub.error().message;
  EXPECT_EQ(EVP_PKEY_eq(pub->get(), key.get()), 1);
  EXPECT_EQ(*spki_sha256(pub->get()), *spki_sha256(key.get()));
  expect_clean_error_queue();
}

TEST(PkiTest, TamperedCsrIsRefused) {
  auto key = new_key();
  auto csr = make_csr_pem(key.get(), "device-1");
  ASSERT_TRUE(csr.ok());
  auto der = pem_body(*csr);
  const std::string cn = "device-1";
  auto at = std::search(der.begin(), der.end(), cn.begin(), cn.end());
  ASSERT_NE(at, der.end());
  at[7] = '2';  // "device-2": same length, still well-formed, signature no longer matches
  auto r = public_key_from_csr(to_pem("CERTIFICATE REQUEST", der));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kCrypto);
  EXPECT_THAT(r.error().message, HasSubstr("signature"));
  expect_clean_error_queue();
}

TEST(PkiTest, CsrWithAnotherKeyTypeIsRefused) {
  ssl::PkeyPtr p384(EVP_EC_gen("P-384"));
  ssl::PkeyPtr rsa(EVP_RSA_gen(2048));
  ASSERT_TRUE(p384 && rsa);
  for (EVP_PKEY* key : {p384.get(), rsa.get()}) {
    auto csr = make_csr_pem(key, "device-1");
    ASSERT_TRUE(csr.ok()) << csr.error().message;
    auto r = public_key_from_csr(*csr);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::kBadValue);
    EXPECT_THAT(r.error().message, HasSubstr("P-256"));
    expect_clean_error_queue();
  }
}

TEST(PkiTest, CsrBuiltDirectlyWithOpensslIsAccepted) {
  // A CSR not made by make_csr_pem (as another client library would send).
  auto key = new_key();
  ssl::X509ReqPtr req(X509_REQ_new());
  ASSERT_TRUE(req);
  ASSERT_EQ(X509_REQ_set_pubkey(req.get(), key.get()), 1);
  ASSERT_GT(X509_REQ_sign(req.get(), key.get(), EVP_sha256()), 0);
  ssl::BioPtr bio(BIO_new(BIO_s_mem()));
  ASSERT_EQ(PEM_write_bio_X509_REQ(bio.get(), req.get()), 1);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  auto pub = public_key_from_csr(std::string(data, static_cast<std::size_t>(len)));
  ASSERT_TRUE(pub.ok()) << pub.error().message;
  EXPECT_EQ(EVP_PKEY_eq(pub->get(), key.get()), 1);
}

TEST(PkiTest, CsrParserRejectsOtherInput) {
  const auto ca = make_ca();
  for (const std::string& bad : {std::string(""), std::string("junk"), pem_of(ca.cert.get()),
                                 *private_key_to_pem(ca.key.get())}) {
    auto r = public_key_from_csr(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::kCrypto);
    expect_clean_error_queue();
  }
  EXPECT_EQ(public_key_from_csr(std::string(70 * 1024, 'x')).error().code, Errc::kTooLarge);
}

// ---------------------------------------------------------------- format_utc

TEST(PkiTest, FormatsUtcTimes) {
  EXPECT_EQ(format_utc(0), "1970-01-01 00:00:00 UTC");
  EXPECT_EQ(format_utc(1700000000), "2023-11-14 22:13:20 UTC");
  EXPECT_EQ(format_utc(951782400), "2000-02-29 00:00:00 UTC");
}

}  // namespace
}  // namespace tether::pki
