#include "agent/UpTlsContext.h"

#include "platform/Pki.h"

namespace tether::agent {

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
  return self;
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
    self->verify_error_ = "server certificate rejected: " + anchor.error().message;
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_CERT_UNTRUSTED);
    return 0;
  }
  self->verify_error_.clear();
  self->verified_ca_ = *anchor;
  X509_STORE_CTX_set_error(store_ctx, X509_V_OK);
  return 1;
}

}  // namespace tether::agent
