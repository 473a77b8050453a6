// Certificates checked against a wrong system clock fail as "not yet valid" or "expired",
// which reads like a broken certificate. These helpers say in words that the clock is the
// likely cause, and which side's clock to check.
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "platform/OpenSsl.h"

namespace tether::pki {

// When one of `chain` is outside its validity period at `now`: a sentence naming `whose`
// certificate ("the server's certificate"), its validity bound, `now`, and that `clock_owner`
// ("this device") should check its system clock. "" when every certificate is within its
// period (the failure has another cause).
[[nodiscard]] std::string clock_skew_diagnosis(const std::vector<X509*>& chain, std::time_t now,
                                               std::string_view whose,
                                               std::string_view clock_owner);

// For an OpenSSL verification error (X509_V_ERR_*) of `cert`: the same sentence when the error
// is CERT_NOT_YET_VALID or CERT_HAS_EXPIRED, else "".
[[nodiscard]] std::string clock_skew_diagnosis(int x509_error, X509* cert, std::time_t now,
                                               std::string_view whose,
                                               std::string_view clock_owner);

// For a TLS alert the peer sent (its text as OpenSSL words it, e.g. "sslv3 alert certificate
// expired", or "alert bad certificate", which OpenSSL sends for "not yet valid"): a sentence
// saying the peer may have found our certificate outside its validity period by its clock,
// or "" for other errors.
[[nodiscard]] std::string peer_clock_diagnosis(std::string_view tls_error, std::string_view peer);

}  // namespace tether::pki
