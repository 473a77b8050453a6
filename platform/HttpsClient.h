// A small blocking HTTPS/1.1 client for the command-line tools (`tether-agent register`,
// `tetherctl`): one request per connection, TLS 1.2+, strict server verification. Daemons
// do not use it: their I/O runs on the libwebsockets loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/Result.h"

namespace tether {

struct TlsTrust {
  // PEM bundle of trusted CA certificates. The server's chain must end at one of them.
  std::string ca_pem;
  // Alternatively (enrollment): trust the CA certificate the server presents in its chain
  // only if its SHA-256 fingerprint (DER) equals this. Checked after the handshake and before
  // a single byte of the request is sent.
  std::string pinned_ca_fingerprint;
  // Optional client certificate and key (PEM).
  std::string client_cert_pem;
  std::string client_key_pem;
};

struct HttpsRequest {
  std::string method = "GET";
  std::string path = "/";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // sent with Content-Length when non-empty or method is POST/PUT
};

struct HttpsResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string peer_ca_pem;  // the CA certificate the chain was verified against (PEM)
};

struct HttpsOptions {
  std::chrono::milliseconds timeout{15000};  // connect + whole exchange
  std::size_t max_response_bytes = 8 * 1024 * 1024;
};

// Errors: kUnavailable (cannot connect, with the reason), kUnauthenticated (the server's
// certificate is not trusted: wrong CA fingerprint, hostname mismatch, expired...),
// kTimeout, kSyntax (malformed HTTP), kTooLarge.
[[nodiscard]] Result<HttpsResponse> https_request(const std::string& host, std::uint16_t port,
                                                  const TlsTrust& trust,
                                                  const HttpsRequest& request,
                                                  const HttpsOptions& options = {});

}  // namespace tether
