// A blocking HTTPS/1.1 client that keeps its connection for the next request, for the bench
// programs' bulk REST work (tether-bench-fleet enrolls tens of thousands of devices). The
// product's platform/HttpsClient opens a connection, and a TLS context, per request: right
// for a command-line tool, but then the TLS handshakes, not the enrollment, are what a bulk
// enrollment measures.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/UniqueFd.h"
#include "platform/OpenSsl.h"

namespace tether::bench {

struct HttpAnswer {
  int status = 0;
  std::string body;
};

class KeepAliveHttps {
 public:
  // Trusts only the CA certificates in `ca_file`; the server's certificate must name `host`.
  KeepAliveHttps(std::string host, std::uint16_t port, std::string ca_file);

  // Sends one request and reads its answer (Content-Length bodies). Opens the connection
  // when there is none, and once more when the kept one turns out closed before the answer
  // began. False with `error` set on failure.
  [[nodiscard]] bool request(const std::string& method, const std::string& path,
                             const std::vector<std::pair<std::string, std::string>>& headers,
                             const std::string& body, HttpAnswer& answer, std::string& error);

  // How many TLS connections were opened so far.
  [[nodiscard]] int connections() const noexcept { return connections_; }

 private:
  bool open(std::string& error);
  void close() noexcept;
  // 1 answered, 0 the kept connection was closed before any byte of the answer, -1 failed.
  int exchange(const std::string& wire, HttpAnswer& answer, std::string& error);

  std::string host_;
  std::uint16_t port_;
  std::string ca_file_;
  ssl::SslCtxPtr ctx_;
  ssl::SslPtr ssl_;
  UniqueFd fd_;
  bool keep_ = false;  // the server did not say Connection: close
  int connections_ = 0;
};

}  // namespace tether::bench
