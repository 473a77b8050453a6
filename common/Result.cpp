#include "common/Result.h"

namespace tether {

std::string_view errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::kInvalidArgument: return "invalid_argument";
    case Errc::kUnknownType: return "unknown_type";
    case Errc::kMissingField: return "missing_field";
    case Errc::kWrongType: return "wrong_type";
    case Errc::kBadValue: return "bad_value";
    case Errc::kTooLarge: return "too_large";
    case Errc::kTooDeep: return "too_deep";
    case Errc::kDuplicateKey: return "duplicate_key";
    case Errc::kSyntax: return "syntax";
    case Errc::kTruncated: return "truncated";
    case Errc::kTrailingData: return "trailing_data";
    case Errc::kBadMagic: return "bad_magic";
    case Errc::kBadVersion: return "bad_version";
    case Errc::kNotFound: return "not_found";
    case Errc::kAlreadyExists: return "already_exists";
    case Errc::kPermissionDenied: return "permission_denied";
    case Errc::kUnauthenticated: return "unauthenticated";
    case Errc::kConflict: return "conflict";
    case Errc::kTimeout: return "timeout";
    case Errc::kUnavailable: return "unavailable";
    case Errc::kIo: return "io";
    case Errc::kCrypto: return "crypto";
    case Errc::kInternal: return "internal";
  }
  return "internal";
}

}  // namespace tether
