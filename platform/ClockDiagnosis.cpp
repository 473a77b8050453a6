#include "platform/ClockDiagnosis.h"

#include <openssl/x509.h>

#include "platform/Pki.h"

namespace tether::pki {
namespace {

std::time_t to_time(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return timegm(&tm);
}

std::string not_yet_valid(X509* cert, std::time_t now, std::string_view whose,
                          std::string_view clock_owner) {
  return std::string(whose) + " is not valid before " +
         format_utc(to_time(X509_get0_notBefore(cert))) + " but the clock of " +
         std::string(clock_owner) + " says it is " + format_utc(now) +
         ": check the system clock of " + std::string(clock_owner) + " (it looks behind)";
}

std::string expired(X509* cert, std::time_t now, std::string_view whose,
                    std::string_view clock_owner) {
  return std::string(whose) + " expired at " + format_utc(to_time(X509_get0_notAfter(cert))) +
         " and the clock of " + std::string(clock_owner) + " says it is " + format_utc(now) +
         ": check the system clock of " + std::string(clock_owner) +
         " (if it is right, the certificate must be renewed)";
}

}  // namespace

std::string clock_skew_diagnosis(const std::vector<X509*>& chain, std::time_t now,
                                 std::string_view whose, std::string_view clock_owner) {
  for (X509* cert : chain) {
    if (cert == nullptr) continue;
    std::time_t at = now;
    if (X509_cmp_time(X509_get0_notBefore(cert), &at) > 0) {
      return not_yet_valid(cert, now, whose, clock_owner);
    }
    if (X509_cmp_time(X509_get0_notAfter(cert), &at) < 0) {
      return expired(cert, now, whose, clock_owner);
    }
  }
  return {};
}

std::string clock_skew_diagnosis(int x509_error, X509* cert, std::time_t now,
                                 std::string_view whose, std::string_view clock_owner) {
  if (cert == nullptr) return {};
  if (x509_error == X509_V_ERR_CERT_NOT_YET_VALID) {
    return not_yet_valid(cert, now, whose, clock_owner);
  }
  if (x509_error == X509_V_ERR_CERT_HAS_EXPIRED) return expired(cert, now, whose, clock_owner);
  return {};
}

std::string peer_clock_diagnosis(std::string_view tls_error, std::string_view peer) {
  // OpenSSL words alert 45 (certificate_expired) as "alert certificate expired"; TLS has no
  // alert of its own for "not yet valid" and OpenSSL sends bad_certificate (42) for it.
  if (tls_error.find("alert certificate expired") != std::string_view::npos) {
    return std::string(peer) +
           " refused this device's certificate as expired by its clock: check the system "
           "clocks of " +
           std::string(peer) + " and of this device";
  }
  if (tls_error.find("alert bad certificate") != std::string_view::npos) {
    return std::string(peer) +
           " refused this device's certificate (bad certificate); if its log says the "
           "certificate is not valid yet, check the system clock of " +
           std::string(peer);
  }
  return {};
}

}  // namespace tether::pki
