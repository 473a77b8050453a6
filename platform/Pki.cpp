#include "platform/Pki.h"

#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

#include "common/Hex.h"

namespace tether {
namespace ssl {

std::string take_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

}  // namespace ssl

namespace pki {
namespace {

constexpr std::size_t kMaxPem = 64 * 1024;

Error crypto_error(std::string what) {
  const std::string detail = ssl::take_errors();
  return make_error(Errc::kCrypto, detail.empty() ? what : what + " (" + detail + ")");
}

int refuse_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*user*/) {
  return -1;
}

Result<ssl::BioPtr> bio_from(std::string_view pem) {
  if (pem.size() > kMaxPem) return make_error(Errc::kTooLarge, "PEM data too large");
  ssl::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return crypto_error("cannot allocate a BIO");
  return bio;
}

std::string bio_string(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(len));
}

Status add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return crypto_error("cannot make extension " + std::string(OBJ_nid2sn(nid)));
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return crypto_error("cannot add extension");
  return {};
}

std::string name_text(const X509_NAME* name) {
  ssl::BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  return bio_string(bio.get());
}

std::time_t asn1_to_time(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return timegm(&tm);
}

Status build_certificate(X509* cert, EVP_PKEY* subject_key, const CertificateRequest& req,
                         X509* issuer_cert, EVP_PKEY* issuer_key) {
  if (X509_set_version(cert, 2) != 1) return crypto_error("cannot set version");
  // 16 random bytes, top bit cleared: a positive serial that is unique without bookkeeping.
  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof serial_bytes) != 1) return crypto_error("no randomness");
  // Top bits 01: positive (DER integers are signed) and always 16 significant bytes, so the
  // serial never prints with a leading zero or shrinks.
  serial_bytes[0] = static_cast<unsigned char>((serial_bytes[0] & 0x3f) | 0x40);
  BIGNUM* bn = BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr);
  ASN1_INTEGER* serial = bn ? BN_to_ASN1_INTEGER(bn, nullptr) : nullptr;
  BN_free(bn);
  if (serial == nullptr || X509_set_serialNumber(cert, serial) != 1) {
    ASN1_INTEGER_free(serial);
    return crypto_error("cannot set serial");
  }
  ASN1_INTEGER_free(serial);
  if (req.lifetime.count() <= 0) {
    return make_error(Errc::kInvalidArgument, "a certificate lifetime must be positive");
  }
  // Backdated to tolerate clock differences, but by at most a tenth of the lifetime: agents
  // renew at two thirds of notAfter - notBefore, and a short-lived certificate must not look
  // due the moment it is issued.
  const long backdate = std::min<long>(300, static_cast<long>(req.lifetime.count() / 10));
  X509_gmtime_adj(X509_getm_notBefore(cert), -backdate);
  X509_gmtime_adj(X509_getm_notAfter(cert), static_cast<long>(req.lifetime.count()));
  if (X509_set_pubkey(cert, subject_key) != 1) return crypto_error("cannot set public key");

  X509_NAME* name = X509_get_subject_name(cert);
  if (req.common_name.empty() || req.common_name.size() > 64) {
    return make_error(Errc::kInvalidArgument, "a certificate common name is 1-64 bytes");
  }
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(req.common_name.c_str()),
                                 -1, -1, 0) != 1) {
    return crypto_error("cannot set subject");
  }
  X509* issuer = issuer_cert ? issuer_cert : cert;
  if (X509_set_issuer_name(cert, X509_get_subject_name(issuer)) != 1) {
    return crypto_error("cannot set issuer");
  }

  switch (req.usage) {
    case CertUsage::kCa:
      TETHER_TRY(add_ext(cert, issuer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
      TETHER_TRY(add_ext(cert, issuer, NID_key_usage, "critical,keyCertSign,cRLSign"));
      break;
    case CertUsage::kServer:
      TETHER_TRY(add_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE"));
      TETHER_TRY(add_ext(cert, issuer, NID_key_usage, "critical,digitalSignature"));
      // Gateways also connect out to the server with this certificate: both usages.
      TETHER_TRY(add_ext(cert, issuer, NID_ext_key_usage, "serverAuth,clientAuth"));
      break;
    case CertUsage::kClient:
      TETHER_TRY(add_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE"));
      TETHER_TRY(add_ext(cert, issuer, NID_key_usage, "critical,digitalSignature"));
      TETHER_TRY(add_ext(cert, issuer, NID_ext_key_usage, "clientAuth"));
      break;
  }
  TETHER_TRY(add_ext(cert, issuer, NID_subject_key_identifier, "hash"));
  if (issuer_cert != nullptr) {
    TETHER_TRY(add_ext(cert, issuer, NID_authority_key_identifier, "keyid:always"));
  }
  // The names are joined into OpenSSL's "DNS:a,IP:b" syntax: a ',' (or a NUL) inside one
  // would add or drop entries, so only host name characters and real addresses pass.
  for (const auto& dns : req.dns_names) {
    if (dns.empty() || dns.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                             "0123456789-.*") != std::string::npos) {
      return make_error(Errc::kInvalidArgument, "invalid DNS name \"" + dns + "\"");
    }
  }
  for (const auto& ip : req.ip_addresses) {
    unsigned char addr[16];
    if (ip.find('\0') != std::string::npos ||
        (inet_pton(AF_INET, ip.c_str(), addr) != 1 && inet_pton(AF_INET6, ip.c_str(), addr) != 1)) {
      return make_error(Errc::kInvalidArgument, "invalid IP address \"" + ip + "\"");
    }
  }
  std::string san;
  for (const auto& dns : req.dns_names) san += (san.empty() ? "" : ",") + std::string("DNS:") + dns;
  for (const auto& ip : req.ip_addresses) san += (san.empty() ? "" : ",") + std::string("IP:") + ip;
  if (!san.empty()) TETHER_TRY(add_ext(cert, issuer, NID_subject_alt_name, san));

  if (X509_sign(cert, issuer_key, EVP_sha256()) == 0) return crypto_error("cannot sign");
  return {};
}

}  // namespace

Result<ssl::PkeyPtr> generate_p256_key() {
  ssl::PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return crypto_error("cannot generate an EC P-256 key");
  return key;
}

Result<std::string> private_key_to_pem(EVP_PKEY* key) {
  ssl::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return crypto_error("cannot encode the private key");
  }
  return bio_string(bio.get());
}

Result<ssl::PkeyPtr> private_key_from_pem(std::string_view pem) {
  TETHER_ASSIGN_OR_RETURN(auto bio, bio_from(pem));
  // An explicit callback: with none, OpenSSL asks for a passphrase on the controlling
  // terminal. Tether keys are never encrypted; an encrypted one is an error, not a prompt.
  ssl::PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, refuse_passphrase, nullptr));
  if (!key) return crypto_error("not a PEM private key");
  return key;
}

Result<Sha256> spki_sha256(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(key, &der);
  if (len <= 0) return crypto_error("cannot encode the public key");
  Sha256 out{};
  unsigned int out_len = 0;
  const int ok =
      EVP_Digest(der, static_cast<std::size_t>(len), out.data(), &out_len, EVP_sha256(), nullptr);
  OPENSSL_free(der);
  if (ok != 1) return crypto_error("cannot hash the public key");
  return out;
}

std::string to_hex(const Sha256& digest) {
  return hex_encode(digest);
}

Result<ssl::X509Ptr> certificate_from_pem(std::string_view pem) {
  TETHER_ASSIGN_OR_RETURN(auto bio, bio_from(pem));
  ssl::X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return crypto_error("not a PEM certificate");
  return cert;
}

Result<std::vector<ssl::X509Ptr>> certificates_from_pem(std::string_view pem) {
  TETHER_ASSIGN_OR_RETURN(auto bio, bio_from(pem));
  std::vector<ssl::X509Ptr> out;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    out.emplace_back(cert);
    if (out.size() > 32) return make_error(Errc::kTooLarge, "too many certificates in a bundle");
  }
  // The loop ends on "no start line" at the end of the data; anything else is corruption.
  const unsigned long err = ERR_peek_last_error();
  if (err != 0 && ERR_GET_REASON(err) != PEM_R_NO_START_LINE) {
    return crypto_error("corrupt certificate bundle");
  }
  ERR_clear_error();
  if (out.empty()) return make_error(Errc::kCrypto, "no certificate in PEM data");
  return out;
}

Result<std::string> certificate_to_pem(X509* cert) {
  ssl::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return crypto_error("cannot encode the certificate");
  }
  return bio_string(bio.get());
}

Result<std::string> certificate_fingerprint(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) != 1) return crypto_error("cannot hash");
  return hex_encode(std::span<const std::uint8_t>(md, len));
}

bool key_matches_certificate(EVP_PKEY* key, X509* cert) {
  EVP_PKEY* pub = X509_get0_pubkey(cert);
  return pub != nullptr && EVP_PKEY_eq(key, pub) == 1;
}

Result<ssl::X509Ptr> make_self_signed(EVP_PKEY* key, const CertificateRequest& req) {
  ssl::X509Ptr cert(X509_new());
  if (!cert) return crypto_error("cannot allocate a certificate");
  TETHER_TRY(build_certificate(cert.get(), key, req, nullptr, key));
  return cert;
}

Result<ssl::X509Ptr> issue_certificate(EVP_PKEY* subject_key, const CertificateRequest& req,
                                       X509* issuer_cert, EVP_PKEY* issuer_key) {
  if (!key_matches_certificate(issuer_key, issuer_cert)) {
    return make_error(Errc::kInvalidArgument, "the issuer key does not match its certificate");
  }
  ssl::X509Ptr cert(X509_new());
  if (!cert) return crypto_error("cannot allocate a certificate");
  TETHER_TRY(build_certificate(cert.get(), subject_key, req, issuer_cert, issuer_key));
  return cert;
}

Result<std::string> make_csr_pem(EVP_PKEY* key, std::string_view common_name) {
  ssl::X509ReqPtr req(X509_REQ_new());
  if (!req) return crypto_error("cannot allocate a CSR");
  X509_REQ_set_version(req.get(), 0);
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  const std::string cn(common_name);
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1 ||
      X509_REQ_set_pubkey(req.get(), key) != 1 ||
      X509_REQ_sign(req.get(), key, EVP_sha256()) == 0) {
    return crypto_error("cannot build the CSR");
  }
  ssl::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), req.get()) != 1) {
    return crypto_error("cannot encode the CSR");
  }
  return bio_string(bio.get());
}

Result<ssl::PkeyPtr> public_key_from_csr(std::string_view pem) {
  TETHER_ASSIGN_OR_RETURN(auto bio, bio_from(pem));
  ssl::X509ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) return crypto_error("not a PEM certificate request");
  ssl::PkeyPtr key(X509_REQ_get_pubkey(req.get()));
  if (!key) return crypto_error("the certificate request has no usable public key");
  if (X509_REQ_verify(req.get(), key.get()) != 1) {
    return crypto_error("the certificate request's signature does not verify");
  }
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_EC) {
    return make_error(Errc::kBadValue, "device keys must be EC P-256");
  }
  char group[32] = {0};
  std::size_t group_len = 0;
  if (EVP_PKEY_get_utf8_string_param(key.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                     &group_len) != 1 ||
      std::strcmp(group, "prime256v1") != 0) {
    return make_error(Errc::kBadValue, "device keys must be EC P-256");
  }
  return key;
}

Result<CertificateInfo> describe(X509* cert) {
  CertificateInfo info;
  info.subject = name_text(X509_get_subject_name(cert));
  info.issuer = name_text(X509_get_issuer_name(cert));
  char cn[256] = {0};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0) {
    info.common_name = cn;
  }
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  BIGNUM* bn = ASN1_INTEGER_to_BN(serial, nullptr);
  if (bn != nullptr) {
    char* hex = BN_bn2hex(bn);
    info.serial = hex ? hex : "";
    OPENSSL_free(hex);
    BN_free(bn);
  }
  for (auto& c : info.serial) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  info.not_before = asn1_to_time(X509_get0_notBefore(cert));
  info.not_after = asn1_to_time(X509_get0_notAfter(cert));
  TETHER_ASSIGN_OR_RETURN(info.fingerprint, certificate_fingerprint(cert));
  EVP_PKEY* pub = X509_get0_pubkey(cert);
  if (pub != nullptr) {
    if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_EC) {
      char group[32] = {0};
      std::size_t group_len = 0;
      EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                     &group_len);
      info.public_key =
          std::strcmp(group, "prime256v1") == 0 ? "EC P-256" : "EC " + std::string(group);
    } else {
      info.public_key =
          std::string(EVP_PKEY_get0_type_name(pub) ? EVP_PKEY_get0_type_name(pub) : "?") + " " +
          std::to_string(EVP_PKEY_get_bits(pub)) + " bits";
    }
    auto spki = spki_sha256(pub);
    if (spki.ok()) info.spki_sha256 = to_hex(*spki);
  }
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
      if (gn->type == GEN_DNS) {
        const auto* s = gn->d.dNSName;
        info.subject_alt_names.push_back(
            "DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                 static_cast<std::size_t>(ASN1_STRING_length(s))));
      } else if (gn->type == GEN_IPADD) {
        const auto* s = gn->d.iPAddress;
        char buf[64] = {0};
        const int len = ASN1_STRING_length(s);
        const unsigned char* p = ASN1_STRING_get0_data(s);
        if (len == 4) {
          std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", p[0], p[1], p[2], p[3]);
        } else if (len == 16) {
          std::string v6;
          for (int k = 0; k < 16; k += 2) {
            char part[8];
            std::snprintf(part, sizeof part, "%s%x", k ? ":" : "", (p[k] << 8) | p[k + 1]);
            v6 += part;
          }
          std::snprintf(buf, sizeof buf, "%s", v6.c_str());
        }
        info.subject_alt_names.push_back(std::string("IP:") + buf);
      }
    }
    GENERAL_NAMES_free(names);
  }
  const std::uint32_t xku = X509_get_extended_key_usage(cert);
  if ((X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) != 0) {
    if (xku & XKU_SSL_SERVER) info.extended_key_usage.push_back("serverAuth");
    if (xku & XKU_SSL_CLIENT) info.extended_key_usage.push_back("clientAuth");
  }
  info.is_ca = X509_check_ca(cert) != 0;
  info.self_signed = X509_self_signed(cert, 1) == 1;
  return info;
}

Status verify_certificate(X509* leaf, const std::vector<X509*>& intermediates,
                          const std::vector<X509*>& trusted, CertUsage usage, std::time_t at) {
  ssl::X509StorePtr store(X509_STORE_new());
  if (!store) return crypto_error("cannot allocate a certificate store");
  for (X509* ca : trusted) {
    if (X509_STORE_add_cert(store.get(), ca) != 1) return crypto_error("cannot add a trusted CA");
  }
  STACK_OF(X509)* chain = sk_X509_new_null();
  for (X509* c : intermediates) sk_X509_push(chain, c);
  ssl::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), leaf, chain) != 1) {
    sk_X509_free(chain);
    return crypto_error("cannot set up verification");
  }
  X509_STORE_CTX_set_purpose(ctx.get(), usage == CertUsage::kServer   ? X509_PURPOSE_SSL_SERVER
                                        : usage == CertUsage::kClient ? X509_PURPOSE_SSL_CLIENT
                                                                      : X509_PURPOSE_ANY);
  if (at != 0) X509_STORE_CTX_set_time(ctx.get(), 0, at);
  const int ok = X509_verify_cert(ctx.get());
  const int err = X509_STORE_CTX_get_error(ctx.get());
  sk_X509_free(chain);
  ERR_clear_error();
  if (ok != 1) {
    Errc code = Errc::kUnauthenticated;
    return make_error(code, std::string("certificate verification failed: ") +
                                X509_verify_cert_error_string(err));
  }
  return {};
}

Result<std::string> verify_pinned_chain(X509* leaf, const std::vector<X509*>& presented,
                                        const std::vector<std::string>& pinned, CertUsage usage,
                                        const X509_VERIFY_PARAM* param) {
  ssl::X509StorePtr store(X509_STORE_new());
  if (!store) return crypto_error("cannot allocate a certificate store");
  bool any_anchor = false;
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  for (X509* c : presented) {
    auto fp = certificate_fingerprint(c);
    if (fp.ok() && std::find(pinned.begin(), pinned.end(), *fp) != pinned.end()) {
      X509_STORE_add_cert(store.get(), c);
      any_anchor = true;
    } else if (c != leaf) {
      sk_X509_push(untrusted, c);
    }
  }
  if (!any_anchor) {
    sk_X509_free(untrusted);
    return make_error(Errc::kUnauthenticated,
                      "the peer's certificate authority is not one this device trusts");
  }
  ssl::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted) != 1) {
    sk_X509_free(untrusted);
    return crypto_error("cannot set up verification");
  }
  if (param != nullptr) X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(ctx.get()), param);
  X509_STORE_CTX_set_purpose(ctx.get(), usage == CertUsage::kServer   ? X509_PURPOSE_SSL_SERVER
                                        : usage == CertUsage::kClient ? X509_PURPOSE_SSL_CLIENT
                                                                      : X509_PURPOSE_ANY);
  const int ok = X509_verify_cert(ctx.get());
  const int err = X509_STORE_CTX_get_error(ctx.get());
  std::string anchor;
  if (ok == 1) {
    STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
    if (chain != nullptr && sk_X509_num(chain) > 0) {
      auto fp = certificate_fingerprint(sk_X509_value(chain, sk_X509_num(chain) - 1));
      if (fp.ok()) anchor = *fp;
    }
  }
  sk_X509_free(untrusted);
  ERR_clear_error();
  if (ok != 1) {
    return make_error(Errc::kUnauthenticated, std::string("certificate verification failed: ") +
                                                  X509_verify_cert_error_string(err));
  }
  return anchor;
}

std::string format_utc(std::time_t t) {
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

}  // namespace pki
}  // namespace tether
