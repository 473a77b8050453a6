#include "agent/UpTlsContext.h"

#include <ctime>

#include "platform/ClockDiagnosis.h"
#include "platform/Pki.h"

namespace tether::agent {
namespace {

// Our own slot in the SSL_CTX (libwebsockets uses others) that leads back to the context.
int context_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

}  // namespace

Result<std::unique_ptr<UpTlsContext>> UpTlsContext::create(EVP_PKEY* key, X509* cert,
                                                           std::vector<std::string> pinned) {
  ssl::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return make_error(Errc::kCrypto, "cannot create a TLS context: " + ssl::take_errors());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  if (SSL_CTX_use_certificate(ctx.get(), cert) != 1 ||
      SSL_CTX_use_PrivateKey(ctx.get(), key) != 1 || SSL_CTX_check_private_key(ctx.get()) != 1) {
    return make_error(Errc::kCrypto, "cannot use the device certificate: " + ssl::take_errors());
  }
  std::unique_ptr<UpTlsContext> self(new UpTlsContext(std::move(ctx)));
  self->pinned_ = std::move(pinned);
  SSL_CTX_set_verify(self->ctx_.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_cert_verify_callback(self->ctx_.get(), &UpTlsContext::verify, self.get());
  SSL_CTX_set_ex_data(self->ctx_.get(), context_index(), self.get());
  SSL_CTX_set_info_callback(self->ctx_.get(), &UpTlsContext::on_tls_info);
  return self;
}

void UpTlsContext::on_tls_info(const SSL* ssl, int where, int value) {
  if ((where & SSL_CB_READ_ALERT) == 0) return;
  auto* self =
      static_cast<UpTlsContext*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_index()));
  if (self != nullptr) self->peer_alert_ = SSL_alert_desc_string_long(value);
}

Status UpTlsContext::use_certificate(X509* cert) {
  if (SSL_CTX_use_certificate(ctx_.get(), cert) != 1 ||
      SSL_CTX_check_private_key(ctx_.get()) != 1) {
    return make_error(Errc::kCrypto, "cannot use the renewed certificate: " + ssl::take_errors());
  }
  return {};
}

int UpTlsContext::verify(X509_STORE_CTX* store_ctx, void* arg) {
  auto* self = static_cast<UpTlsContext*>(arg);
  X509* leaf = X509_STORE_CTX_get0_cert(store_ctx);
  auto* ssl_conn = static_cast<SSL*>(
      X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  std::vector<X509*> presented;
  if (STACK_OF(X509)* chain = X509_STORE_CTX_get0_untrusted(store_ctx)) {
    for (int i = 0; i < sk_X509_num(chain); ++i) presented.push_back(sk_X509_value(chain, i));
  }
  if (leaf == nullptr || ssl_conn == nullptr) {
    self->verify_error_ = "the server presented no certificate";
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_UNSPECIFIED);
    return 0;
  }
  auto anchor = pki::verify_pinned_chain(leaf, presented, self->pinned_, pki::CertUsage::kServer,
                                         SSL_get0_param(ssl_conn));
  if (!anchor.ok()) {
    // A clock far off makes every certificate "not yet valid" or "expired": say so.
    std::vector<X509*> chain{leaf};
    chain.insert(chain.end(), presented.begin(), presented.end());
    const std::string& why = anchor.error().message;
    const bool time_error =
        why.find("not yet valid") != std::string::npos || why.find("expired") != std::string::npos;
    const std::string clock =
        time_error ? pki::clock_skew_diagnosis(chain, std::time(nullptr),
                                               "the server's certificate", "this device")
                   : std::string();
    self->verify_error_ = "server certificate rejected: " + (clock.empty() ? why : clock);
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_CERT_UNTRUSTED);
    return 0;
  }
  self->verify_error_.clear();
  self->verified_ca_ = *anchor;
  X509_STORE_CTX_set_error(store_ctx, X509_V_OK);
  return 1;
}

}  // namespace tether::agent
