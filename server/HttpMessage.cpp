#include "server/HttpMessage.h"

namespace tether::server {

HttpResponse json_response(int status, const nlohmann::json& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  r.body.push_back('\n');
  return r;
}

HttpResponse error_response(int status, Errc code, std::string_view message) {
  return error_response(status, errc_name(code), message);
}

HttpResponse error_response(int status, std::string_view code, std::string_view message) {
  nlohmann::json body = {
      {"error", {{"code", std::string(code)}, {"message", std::string(message)}}}};
  return json_response(status, body);
}

int http_status_for(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument:
    case Errc::kUnknownType:
    case Errc::kMissingField:
    case Errc::kWrongType:
    case Errc::kBadValue:
    case Errc::kTooLarge:
    case Errc::kTooDeep:
    case Errc::kDuplicateKey:
    case Errc::kSyntax:
    case Errc::kTruncated:
    case Errc::kTrailingData:
    case Errc::kBadMagic:
    case Errc::kBadVersion: return 400;
    case Errc::kUnauthenticated: return 401;
    case Errc::kPermissionDenied: return 403;
    case Errc::kNotFound: return 404;
    case Errc::kAlreadyExists:
    case Errc::kConflict: return 409;
    case Errc::kUnavailable: return 503;
    case Errc::kTimeout: return 504;
    case Errc::kIo:
    case Errc::kCrypto:
    case Errc::kInternal: return 500;
  }
  return 500;
}

}  // namespace tether::server
