#include "bench/support/KeepAliveHttps.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "bench/support/TlsClient.h"

namespace tether::bench {

namespace {

constexpr std::size_t kMaxHead = 64 * 1024;
constexpr std::size_t kMaxBody = 8 * 1024 * 1024;
constexpr int kIoTimeoutSeconds = 30;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

KeepAliveHttps::KeepAliveHttps(std::string host, std::uint16_t port, std::string ca_file)
    : host_(std::move(host)), port_(port), ca_file_(std::move(ca_file)) {}

void KeepAliveHttps::close() noexcept {
  ssl_.reset();
  fd_.reset();
  keep_ = false;
}

bool KeepAliveHttps::open(std::string& error) {
  close();
  if (!ctx_) {
    TlsClientConfig config;
    config.ca_file = ca_file_;
    config.alpn = std::string("\x08http/1.1");
    ctx_ = make_tls_client_ctx(config, error);
    if (!ctx_) return false;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  if (::inet_pton(AF_INET, host_.c_str(), &addr.sin_addr) != 1) {
    error = "not an IPv4 address: " + host_;
    return false;
  }
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  const timeval tv{kIoTimeoutSeconds, 0};
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const int one = 1;
  (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    error = "connect " + host_ + ":" + std::to_string(port_) + ": " + std::strerror(errno);
    return false;
  }
  ssl::SslPtr ssl(SSL_new(ctx_.get()));
  if (!ssl || SSL_set_fd(ssl.get(), fd.get()) != 1) {
    error = "SSL_new: " + tls_error_text();
    return false;
  }
  tls_expect_host(ssl.get(), host_);
  if (tls_connect(ssl.get()) != TlsIo::kOk) {
    error = "TLS handshake with " + host_ + ": " + tls_error_text();
    return false;
  }
  fd_ = std::move(fd);
  ssl_ = std::move(ssl);
  keep_ = true;
  ++connections_;
  return true;
}

bool KeepAliveHttps::request(const std::string& method, const std::string& path,
                             const std::vector<std::pair<std::string, std::string>>& headers,
                             const std::string& body, HttpAnswer& answer, std::string& error) {
  std::string wire =
      method + " " + path + " HTTP/1.1\r\nHost: " + host_ + ":" + std::to_string(port_) + "\r\n";
  for (const auto& [name, value] : headers) wire += name + ": " + value + "\r\n";
  wire += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool reused = ssl_ && keep_;
    if (!reused && !open(error)) return false;
    const int rc = exchange(wire, answer, error);
    if (rc == 1) return true;
    close();
    // A kept connection the server had closed meanwhile: once more on a new one.
    if (rc < 0 || !reused) return false;
  }
  return false;
}

int KeepAliveHttps::exchange(const std::string& wire, HttpAnswer& answer, std::string& error) {
  std::size_t done = 0;
  while (done < wire.size()) {
    std::size_t put = 0;
    const TlsIo io = tls_write(ssl_.get(), wire.data() + done, wire.size() - done, put);
    if (io != TlsIo::kOk) {
      error = "sending the request: " +
              (io == TlsIo::kSysError ? std::string(std::strerror(errno)) : tls_error_text());
      return done == 0 && io != TlsIo::kTlsError ? 0 : -1;
    }
    done += put;
  }
  std::string raw;
  std::size_t head_end = std::string::npos;
  std::size_t length = 0;
  char buf[16384];
  while (true) {
    if (head_end != std::string::npos && raw.size() >= head_end + 4 + length) break;
    std::size_t got = 0;
    const TlsIo io = tls_read(ssl_.get(), buf, sizeof buf, got);
    if (io != TlsIo::kOk) {
      if (raw.empty() && (io == TlsIo::kClosed || io == TlsIo::kSysError)) {
        error = "the server closed the kept connection";
        return 0;
      }
      error = "reading the answer: " + (io == TlsIo::kClosed     ? std::string("closed early")
                                        : io == TlsIo::kSysError ? std::strerror(errno)
                                                                 : tls_error_text());
      return -1;
    }
    raw.append(buf, got);
    if (head_end == std::string::npos) {
      head_end = raw.find("\r\n\r\n");
      if (head_end == std::string::npos) {
        if (raw.size() > kMaxHead) {
          error = "answer headers too large";
          return -1;
        }
        continue;
      }
      const std::string head = lower(raw.substr(0, head_end));
      if (head.rfind("http/1.", 0) != 0 || head.size() < 12) {
        error = "not an HTTP answer";
        return -1;
      }
      answer.status = std::atoi(head.c_str() + 9);
      const auto cl = head.find("\r\ncontent-length:");
      if (cl == std::string::npos) {
        error = "an answer without Content-Length";
        return -1;
      }
      length = std::strtoul(head.c_str() + cl + 17, nullptr, 10);
      if (length > kMaxBody) {
        error = "answer too large";
        return -1;
      }
      keep_ = head.find("\r\nconnection: close") == std::string::npos;
    }
  }
  answer.body = raw.substr(head_end + 4, length);
  if (!keep_) close();
  return 1;
}

}  // namespace tether::bench
