// One HTTP exchange as plain values, so that the REST API is functions from a request to a
// response, testable without sockets; HttpsServer translates to and from libwebsockets.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/Result.h"

namespace tether::server {

inline constexpr std::size_t kMaxRequestBody = 1024 * 1024;

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string
  std::string authorization;
  std::string body;
  std::string peer_address;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

// 200/201 with a JSON body (invalid UTF-8 from stored data becomes U+FFFD, never throws).
[[nodiscard]] HttpResponse json_response(int status, const nlohmann::json& body);
// {"error": {"code": errc_name(code), "message": message}}
[[nodiscard]] HttpResponse error_response(int status, Errc code, std::string_view message);
// The status an error of this kind is reported with.
[[nodiscard]] int http_status_for(Errc code);

}  // namespace tether::server
