// The TLS client context of the agent's connections to its server or gateway: the device's
// key and certificate for mutual TLS, and a server check pinned to the installation's CA
// fingerprints (the trusted set can change at run time: CA rotation).
//
// It replaces OpenSSL's chain building (SSL_CTX_set_cert_verify_callback): the CA
// certificate whose fingerprint is pinned is taken from the chain the server presents, the
// chain must verify to it with purpose serverAuth, and libwebsockets' host/IP check (set on
// the connection's verification parameters) still applies.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/Result.h"
#include "platform/OpenSsl.h"

namespace tether::agent {

class UpTlsContext {
 public:
  [[nodiscard]] static Result<std::unique_ptr<UpTlsContext>> create(
      EVP_PKEY* key, X509* cert, std::vector<std::string> pinned_ca_fingerprints);

  UpTlsContext(const UpTlsContext&) = delete;
  UpTlsContext& operator=(const UpTlsContext&) = delete;

  [[nodiscard]] SSL_CTX* get() const noexcept { return ctx_.get(); }
  // New connections present this certificate (after a renewal).
  [[nodiscard]] Status use_certificate(X509* cert);
  void set_pinned(std::vector<std::string> fingerprints) { pinned_ = std::move(fingerprints); }
  [[nodiscard]] const std::vector<std::string>& pinned() const noexcept { return pinned_; }
  // The CA fingerprint the latest successful handshake was verified against.
  [[nodiscard]] const std::string& verified_ca() const noexcept { return verified_ca_; }
  // Why the latest verification failed ("" if it did not).
  [[nodiscard]] const std::string& verify_error() const noexcept { return verify_error_; }
  // The latest TLS alert the server sent us ("certificate expired"), "" if none.
  [[nodiscard]] const std::string& peer_alert() const noexcept { return peer_alert_; }
  // Before an attempt: forget the previous attempt's failure.
  void clear_verify_error() {
    verify_error_.clear();
    peer_alert_.clear();
  }

 private:
  explicit UpTlsContext(ssl::SslCtxPtr ctx) : ctx_(std::move(ctx)) {}
  static int verify(X509_STORE_CTX* store_ctx, void* arg);
  // Records alerts from the server: with TLS 1.3 the server's refusal of our certificate
  // arrives after the client finished its handshake, and lws reports only "read failed".
  static void on_tls_info(const SSL* ssl, int where, int value);

  ssl::SslCtxPtr ctx_;
  std::vector<std::string> pinned_;
  std::string verified_ca_;
  std::string verify_error_;
  std::string peer_alert_;
};

}  // namespace tether::agent
