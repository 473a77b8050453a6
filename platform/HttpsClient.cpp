#include "platform/HttpsClient.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "common/UniqueFd.h"
#include "common/Version.h"
#include "platform/OpenSsl.h"
#include "platform/Pki.h"

namespace tether {
namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<std::int64_t>(0, left.count()));
}

Result<UniqueFd> connect_tcp(const std::string& host, std::uint16_t port,
                             Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port_text = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), port_text.c_str(), &hints, &res); rc != 0) {
    return make_error(Errc::kUnavailable, "cannot resolve " + host + ": " + gai_strerror(rc));
  }
  std::string last_error = "no address";
  bool timed_out = false;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) continue;
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last_error = std::strerror(errno);
      continue;
    }
    pollfd p{fd.get(), POLLOUT, 0};
    int n = 0;
    do {
      n = ::poll(&p, 1, remaining_ms(deadline));
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
      timed_out = true;  // try the remaining addresses with what time is left
      continue;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (n < 0 || err != 0) {
      last_error = std::strerror(n < 0 ? errno : err);
      continue;
    }
    ::freeaddrinfo(res);
    return fd;
  }
  ::freeaddrinfo(res);
  if (timed_out) {
    return make_error(Errc::kTimeout, "timed out connecting to " + host + ":" + port_text);
  }
  return make_error(Errc::kUnavailable,
                    "cannot connect to " + host + ":" + port_text + ": " + last_error);
}

// Waits until the SSL operation that returned `rc` can make progress.
Status wait_for(SSL* ssl, int fd, int rc, Clock::time_point deadline, const char* what) {
  const int err = SSL_get_error(ssl, rc);
  short events = 0;
  if (err == SSL_ERROR_WANT_READ)
    events = POLLIN;
  else if (err == SSL_ERROR_WANT_WRITE)
    events = POLLOUT;
  else {
    std::string detail = ssl::take_errors();
    if (detail.empty())
      detail = err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN
                   ? "connection closed by peer"
                   : "TLS error " + std::to_string(err);
    return make_error(Errc::kUnavailable, std::string(what) + ": " + detail);
  }
  pollfd p{fd, events, 0};
  int n = 0;
  do {
    n = ::poll(&p, 1, remaining_ms(deadline));
  } while (n < 0 && errno == EINTR && remaining_ms(deadline) > 0);
  if (n == 0) return make_error(Errc::kTimeout, std::string("timed out during ") + what);
  if (n < 0) return make_error(Errc::kIo, std::string(what) + ": " + std::strerror(errno));
  return {};
}

// Verifies the peer chain after the handshake: against `ca_pem`, or against the CA the chain
// itself carries when its fingerprint equals the pin. Returns the trusted CA as PEM.
Result<std::string> verify_peer(SSL* ssl, const std::string& host, const TlsTrust& trust) {
  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (leaf == nullptr) return make_error(Errc::kUnauthenticated, "the server sent no certificate");
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);  // includes the leaf on the client side
  std::vector<X509*> presented;
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    presented.push_back(sk_X509_value(chain, i));
  }

  std::vector<ssl::X509Ptr> owned;
  std::vector<X509*> trusted;
  if (!trust.pinned_ca_fingerprint.empty()) {
    for (X509* c : presented) {
      auto fp = pki::certificate_fingerprint(c);
      if (fp.ok() && *fp == trust.pinned_ca_fingerprint) trusted.push_back(c);
    }
    if (trusted.empty()) {
      return make_error(Errc::kUnauthenticated,
                        "the server's certificate authority does not match the fingerprint in "
                        "the token (expected " +
                            trust.pinned_ca_fingerprint.substr(0, 16) +
                            "...); refusing to send anything to it");
    }
  } else {
    auto cas = pki::certificates_from_pem(trust.ca_pem);
    if (!cas.ok()) return cas.error().context("the trusted CA file");
    owned = std::move(cas).value();
    for (auto& c : owned) trusted.push_back(c.get());
  }
  std::vector<X509*> intermediates;
  for (X509* c : presented) {
    if (c != leaf) intermediates.push_back(c);
  }
  auto verified = pki::verify_certificate(leaf, intermediates, trusted, pki::CertUsage::kServer);
  if (!verified.ok())
    return make_error(Errc::kUnauthenticated, "server " + verified.error().message);

  in6_addr addr{};
  const bool is_ip = ::inet_pton(AF_INET, host.c_str(), &addr) == 1 ||
                     ::inet_pton(AF_INET6, host.c_str(), &addr) == 1;
  const int name_ok = is_ip ? X509_check_ip_asc(leaf, host.c_str(), 0)
                            : X509_check_host(leaf, host.c_str(), host.size(), 0, nullptr);
  if (name_ok != 1) {
    return make_error(Errc::kUnauthenticated,
                      "the server's certificate is not valid for the name \"" + host + "\"");
  }
  // The CA the chain was verified against: with a pin, the presented CA; else the first of
  // ours that issued the top of the chain.
  X509* top = intermediates.empty() ? leaf : intermediates.back();
  for (X509* ca : trusted) {
    if (X509_check_issued(ca, top) == X509_V_OK || ca == top) return pki::certificate_to_pem(ca);
  }
  return pki::certificate_to_pem(trusted.front());
}

Status write_all(SSL* ssl, int fd, const std::string& data, Clock::time_point deadline) {
  std::size_t done = 0;
  while (done < data.size()) {
    const int n = SSL_write(ssl, data.data() + done, static_cast<int>(data.size() - done));
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    TETHER_TRY(wait_for(ssl, fd, n, deadline, "sending the request"));
  }
  return {};
}

// Parses a complete response out of `raw` once the headers and the body are in; returns
// nullopt while more bytes are needed.
Result<std::optional<HttpsResponse>> try_parse(const std::string& raw, bool eof,
                                               std::size_t max_bytes) {
  const auto head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    if (raw.size() > 64 * 1024) return make_error(Errc::kTooLarge, "response headers too large");
    if (eof) return make_error(Errc::kSyntax, "the server closed the connection early");
    return std::optional<HttpsResponse>{};
  }
  HttpsResponse resp;
  const std::string head = raw.substr(0, head_end);
  std::size_t line_end = head.find("\r\n");
  const std::string status_line = head.substr(0, line_end);
  if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) {
    return make_error(Errc::kSyntax, "malformed HTTP status line");
  }
  resp.status = std::atoi(status_line.c_str() + 9);
  while (line_end != std::string::npos && line_end < head.size()) {
    const std::size_t start = line_end + 2;
    line_end = head.find("\r\n", start);
    const std::string line =
        head.substr(start, line_end == std::string::npos ? std::string::npos : line_end - start);
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    resp.headers[name] = value;
  }
  const std::string body = raw.substr(head_end + 4);
  if (auto te = resp.headers.find("transfer-encoding");
      te != resp.headers.end() && te->second.find("chunked") != std::string::npos) {
    std::size_t pos = 0;
    std::string out;
    while (true) {
      const auto eol = body.find("\r\n", pos);
      if (eol == std::string::npos) break;
      const std::size_t size = std::strtoul(body.substr(pos, eol - pos).c_str(), nullptr, 16);
      if (size == 0) {
        resp.body = std::move(out);
        return std::optional(std::move(resp));
      }
      if (out.size() + size > max_bytes) return make_error(Errc::kTooLarge, "response too large");
      if (body.size() < eol + 2 + size + 2) break;
      out.append(body, eol + 2, size);
      pos = eol + 2 + size + 2;
    }
    if (eof) return make_error(Errc::kSyntax, "truncated chunked response");
    return std::optional<HttpsResponse>{};
  }
  if (auto cl = resp.headers.find("content-length"); cl != resp.headers.end()) {
    const std::size_t len = std::strtoul(cl->second.c_str(), nullptr, 10);
    if (len > max_bytes) return make_error(Errc::kTooLarge, "response too large");
    if (body.size() >= len) {
      resp.body = body.substr(0, len);
      return std::optional(std::move(resp));
    }
    if (eof) return make_error(Errc::kSyntax, "truncated response");
    return std::optional<HttpsResponse>{};
  }
  if (!eof) return std::optional<HttpsResponse>{};
  resp.body = body;
  return std::optional(std::move(resp));
}

}  // namespace

Result<HttpsResponse> https_request(const std::string& host, std::uint16_t port,
                                    const TlsTrust& trust, const HttpsRequest& request,
                                    const HttpsOptions& options) {
  const auto deadline = Clock::now() + options.timeout;
  ssl::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return make_error(Errc::kCrypto, "cannot create a TLS context");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // Verification happens in verify_peer() after the handshake, before anything is sent.
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  if (!trust.client_cert_pem.empty()) {
    auto cert = pki::certificate_from_pem(trust.client_cert_pem);
    auto key = pki::private_key_from_pem(trust.client_key_pem);
    if (!cert.ok()) return cert.error().context("client certificate");
    if (!key.ok()) return key.error().context("client key");
    if (SSL_CTX_use_certificate(ctx.get(), cert->get()) != 1 ||
        SSL_CTX_use_PrivateKey(ctx.get(), key->get()) != 1) {
      return make_error(Errc::kCrypto, "cannot use the client certificate: " + ssl::take_errors());
    }
  }

  TETHER_ASSIGN_OR_RETURN(UniqueFd fd, connect_tcp(host, port, deadline));
  ssl::SslPtr conn(SSL_new(ctx.get()));
  if (!conn) return make_error(Errc::kCrypto, "cannot create a TLS session");
  SSL_set_fd(conn.get(), fd.get());
  in6_addr addr{};
  const bool is_ip = ::inet_pton(AF_INET, host.c_str(), &addr) == 1 ||
                     ::inet_pton(AF_INET6, host.c_str(), &addr) == 1;
  if (!is_ip) SSL_set_tlsext_host_name(conn.get(), host.c_str());
  while (true) {
    const int rc = SSL_connect(conn.get());
    if (rc == 1) break;
    auto waited = wait_for(conn.get(), fd.get(), rc, deadline, "the TLS handshake");
    if (!waited.ok())
      return waited.error().context("connecting to " + host + ":" + std::to_string(port));
  }
  TETHER_ASSIGN_OR_RETURN(std::string ca_pem, verify_peer(conn.get(), host, trust));

  std::string wire = request.method + " " + request.path + " HTTP/1.1\r\n";
  const bool v6 = host.find(':') != std::string::npos;
  wire += "Host: " + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "\r\n";
  wire += "Connection: close\r\nUser-Agent: tether/" + std::string(kVersion) + "\r\n";
  for (const auto& [name, value] : request.headers) wire += name + ": " + value + "\r\n";
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT") {
    wire += "Content-Length: " + std::to_string(request.body.size()) + "\r\n";
  }
  wire += "\r\n";
  wire += request.body;
  TETHER_TRY(write_all(conn.get(), fd.get(), wire, deadline));

  std::string raw;
  char buf[16384];
  while (true) {
    const int n = SSL_read(conn.get(), buf, sizeof buf);
    bool eof = false;
    if (n > 0) {
      raw.append(buf, static_cast<std::size_t>(n));
      if (raw.size() > options.max_response_bytes + 64 * 1024) {
        return make_error(Errc::kTooLarge, "response too large");
      }
    } else {
      const int err = SSL_get_error(conn.get(), n);
      if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL) {
        eof = true;
        ERR_clear_error();
      } else {
        TETHER_TRY(wait_for(conn.get(), fd.get(), n, deadline, "reading the response"));
        continue;
      }
    }
    TETHER_ASSIGN_OR_RETURN(auto parsed, try_parse(raw, eof, options.max_response_bytes));
    if (parsed) {
      parsed->peer_ca_pem = std::move(ca_pem);
      return std::move(*parsed);
    }
  }
}

}  // namespace tether
