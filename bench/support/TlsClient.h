// Non-blocking OpenSSL client plumbing shared by tether-bench-fleet and tether-bench-relay:
// the client SSL_CTX (with the few settings where the two differ on purpose as parameters),
// stepping a handshake, and reads and writes that say what the socket must wait for. The
// programs own their sockets and their loops (epoll, poll).
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <string>

#include "platform/OpenSsl.h"

namespace tether::bench {

struct TlsClientConfig {
  std::string ca_file;    // when set, the server's certificate must chain to it
  std::string cert_file;  // with key_file: the chain and key every connection presents
  std::string key_file;
  std::string alpn;  // ALPN protocol list in wire format ("\x08http/1.1"); empty: none
  // SSL_MODE_RELEASE_BUFFERS: an idle connection holds no record buffers (the fleet keeps
  // 20k+ idle channels open).
  bool release_buffers = false;
  // Several records per SSL_read into a buffer of read_buffer_len (0: OpenSSL's default):
  // fewer system calls when moving bulk data (the relay pump).
  bool read_ahead = false;
  std::size_t read_buffer_len = 0;
  bool session_cache = true;           // false: SSL_SESS_CACHE_OFF
  bool ignore_unexpected_eof = false;  // an EOF without close_notify reads as a clean EOF
};

// Makes the context, or null with `error` set.
ssl::SslCtxPtr make_tls_client_ctx(const TlsClientConfig& config, std::string& error);

// Makes the server's certificate have to name `host` (an IP address or a DNS name, which
// then also goes out as SNI).
void tls_expect_host(SSL* ssl, const std::string& host);

// What a TLS call on a non-blocking socket came to.
enum class TlsIo {
  kOk,
  kWantRead,   // try again when the socket is readable
  kWantWrite,  // try again when the socket is writable
  kClosed,     // the peer closed (close_notify, or EOF where OpenSSL allows it)
  kSysError,   // a socket error: errno says which
  kTlsError,   // a TLS failure: the error queue says which (tls_error_text)
};

// One step of the client handshake.
[[nodiscard]] TlsIo tls_connect(SSL* ssl);
// Reads up to `cap` bytes into `buf`; `got` is how many.
[[nodiscard]] TlsIo tls_read(SSL* ssl, void* buf, std::size_t cap, std::size_t& got);
// Writes up to `n` bytes; `put` is how many.
[[nodiscard]] TlsIo tls_write(SSL* ssl, const void* buf, std::size_t n, std::size_t& put);

// The first error on OpenSSL's queue as text ("TLS error" when empty); clears the queue.
std::string tls_error_text();

}  // namespace tether::bench
