#include "bench/support/TlsClient.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cerrno>

namespace tether::bench {
namespace {

// SSL_get_error's answer for a non-blocking socket. errno is left as the failed call set it.
TlsIo classify(SSL* ssl, int ret) {
  const int e = SSL_get_error(ssl, ret);
  if (e == SSL_ERROR_WANT_READ) return TlsIo::kWantRead;
  if (e == SSL_ERROR_WANT_WRITE) return TlsIo::kWantWrite;
  if (e == SSL_ERROR_ZERO_RETURN) return TlsIo::kClosed;
  if (e == SSL_ERROR_SYSCALL) {
    return errno != 0 && errno != EAGAIN ? TlsIo::kSysError : TlsIo::kClosed;
  }
  return TlsIo::kTlsError;
}

}  // namespace

ssl::SslCtxPtr make_tls_client_ctx(const TlsClientConfig& config, std::string& error) {
  ssl::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    error = tls_error_text();
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  long mode = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
  if (config.release_buffers) mode |= SSL_MODE_RELEASE_BUFFERS;
  SSL_CTX_set_mode(ctx.get(), mode);
  if (config.ignore_unexpected_eof) SSL_CTX_set_options(ctx.get(), SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (config.read_ahead) SSL_CTX_set_read_ahead(ctx.get(), 1);
  if (config.read_buffer_len != 0) {
    SSL_CTX_set_default_read_buffer_len(ctx.get(), config.read_buffer_len);
  }
  if (!config.session_cache) SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  if (!config.alpn.empty() &&
      SSL_CTX_set_alpn_protos(ctx.get(), reinterpret_cast<const unsigned char*>(config.alpn.data()),
                              static_cast<unsigned>(config.alpn.size())) != 0) {
    error = "bad ALPN list: " + tls_error_text();
    return nullptr;
  }
  if (!config.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), config.ca_file.c_str(), nullptr) != 1) {
      error = "cannot load " + config.ca_file + ": " + tls_error_text();
      return nullptr;
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  }
  if (!config.cert_file.empty() &&
      (SSL_CTX_use_certificate_chain_file(ctx.get(), config.cert_file.c_str()) != 1 ||
       SSL_CTX_use_PrivateKey_file(ctx.get(), config.key_file.c_str(), SSL_FILETYPE_PEM) != 1)) {
    error = "cannot load " + config.cert_file + " / " + config.key_file + ": " + tls_error_text();
    return nullptr;
  }
  return ctx;
}

void tls_expect_host(SSL* ssl, const std::string& host) {
  in6_addr addr6{};
  in_addr addr4{};
  if (inet_pton(AF_INET, host.c_str(), &addr4) == 1 ||
      inet_pton(AF_INET6, host.c_str(), &addr6) == 1) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, host.c_str());
    SSL_set1_host(ssl, host.c_str());
  }
}

TlsIo tls_connect(SSL* ssl) {
  ERR_clear_error();
  const int r = SSL_connect(ssl);
  return r == 1 ? TlsIo::kOk : classify(ssl, r);
}

TlsIo tls_read(SSL* ssl, void* buf, std::size_t cap, std::size_t& got) {
  got = 0;
  ERR_clear_error();
  if (SSL_read_ex(ssl, buf, cap, &got) == 1) return TlsIo::kOk;
  return classify(ssl, 0);
}

TlsIo tls_write(SSL* ssl, const void* buf, std::size_t n, std::size_t& put) {
  put = 0;
  ERR_clear_error();
  if (SSL_write_ex(ssl, buf, n, &put) == 1) return TlsIo::kOk;
  return classify(ssl, 0);
}

std::string tls_error_text() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "TLS error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

}  // namespace tether::bench
