// One HTTP exchange as plain values, so that the REST API is functions from a request to a
// response, testable without sockets; HttpsServer translates to and from libwebsockets.
#pragma once

#include <cstddef>
#include <functional>
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
  std::string query;   // the query arguments, URL-decoded, joined with '&' ("a=1&b=2")
  std::string authorization;
  std::string body;
  std::string peer_address;
  std::string host;  // the Host header as sent ("" when absent); not validated
  // Who is calling: set by RestApi from the bearer token before routing (server/UserApi.h).
  // "admin" for the admin token or a web session opened with it, else a user's name; ""
  // when the request carries no valid credential. `principal_is_admin` for the former.
  std::string principal;
  bool principal_is_admin = false;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

// Delivers the response to one request. A handler calls it exactly once, at once or later
// (after a device answered); HttpsServer drops calls for an exchange that is gone.
using HttpRespond = std::function<void(HttpResponse)>;
// What the listener hands every request to.
using HttpHandler = std::function<void(const HttpRequest&, HttpRespond)>;

// 200/201 with a JSON body (invalid UTF-8 from stored data becomes U+FFFD, never throws).
[[nodiscard]] HttpResponse json_response(int status, const nlohmann::json& body);
// {"error": {"code": errc_name(code), "message": message}}
[[nodiscard]] HttpResponse error_response(int status, Errc code, std::string_view message);
// The same with a code given as text: a device's own error code, passed on as it sent it.
[[nodiscard]] HttpResponse error_response(int status, std::string_view code,
                                          std::string_view message);
// The status an error of this kind is reported with.
[[nodiscard]] int http_status_for(Errc code);

}  // namespace tether::server
