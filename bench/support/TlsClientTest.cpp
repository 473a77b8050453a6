#include "bench/support/TlsClient.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace tether::bench {
namespace {

TEST(TlsClientTest, TheFleetsSettings) {
  TlsClientConfig config;
  config.alpn = std::string("\x08http/1.1", 9);
  config.release_buffers = true;
  config.session_cache = false;
  std::string error;
  auto ctx = make_tls_client_ctx(config, error);
  ASSERT_TRUE(ctx) << error;
  const long mode = SSL_CTX_get_mode(ctx.get());
  EXPECT_TRUE(mode & SSL_MODE_RELEASE_BUFFERS);
  EXPECT_TRUE(mode & SSL_MODE_ENABLE_PARTIAL_WRITE);
  EXPECT_TRUE(mode & SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  EXPECT_EQ(SSL_CTX_get_read_ahead(ctx.get()), 0);
  EXPECT_EQ(SSL_CTX_get_session_cache_mode(ctx.get()), SSL_SESS_CACHE_OFF);
  EXPECT_EQ(SSL_CTX_get_options(ctx.get()) & SSL_OP_IGNORE_UNEXPECTED_EOF, 0u);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx.get()), TLS1_2_VERSION);
  EXPECT_EQ(SSL_CTX_get_verify_mode(ctx.get()), SSL_VERIFY_NONE);  // no CA given
}

TEST(TlsClientTest, TheRelaysSettings) {
  TlsClientConfig config;
  config.read_ahead = true;
  config.read_buffer_len = 64 * 1024;
  config.ignore_unexpected_eof = true;
  std::string error;
  auto ctx = make_tls_client_ctx(config, error);
  ASSERT_TRUE(ctx) << error;
  const long mode = SSL_CTX_get_mode(ctx.get());
  EXPECT_FALSE(mode & SSL_MODE_RELEASE_BUFFERS);
  EXPECT_TRUE(mode & SSL_MODE_ENABLE_PARTIAL_WRITE);
  EXPECT_EQ(SSL_CTX_get_read_ahead(ctx.get()), 1);
  EXPECT_NE(SSL_CTX_get_session_cache_mode(ctx.get()), SSL_SESS_CACHE_OFF);
  EXPECT_NE(SSL_CTX_get_options(ctx.get()) & SSL_OP_IGNORE_UNEXPECTED_EOF, 0u);
}

TEST(TlsClientTest, AMissingFileIsAnError) {
  std::string error;
  TlsClientConfig config;
  config.ca_file = "/nonexistent/ca.pem";
  EXPECT_FALSE(make_tls_client_ctx(config, error));
  EXPECT_NE(error.find("cannot load /nonexistent/ca.pem"), std::string::npos) << error;
  config = {};
  config.cert_file = "/nonexistent/a.crt";
  config.key_file = "/nonexistent/a.key";
  error.clear();
  EXPECT_FALSE(make_tls_client_ctx(config, error));
  EXPECT_NE(error.find("cannot load /nonexistent/a.crt / /nonexistent/a.key"), std::string::npos)
      << error;
  EXPECT_EQ(tls_error_text(), "TLS error");  // the queue was drained
}

// A self-signed server for 127.0.0.1 on one end of a socket pair, the client on the other,
// both non-blocking, stepped in turn as the programs' loops would.
class TlsClientLoopbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ssl::PkeyPtr key(EVP_EC_gen("P-256"));
    ASSERT_TRUE(key);
    ssl::X509Ptr cert(X509_new());
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
    X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
    X509_set_pubkey(cert.get(), key.get());
    X509V3_CTX v3{};
    X509V3_set_ctx(&v3, cert.get(), cert.get(), nullptr, nullptr, 0);
    X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, "IP:127.0.0.1");
    ASSERT_NE(san, nullptr);
    X509_add_ext(cert.get(), san, -1);
    X509_EXTENSION_free(san);
    ASSERT_GT(X509_sign(cert.get(), key.get(), EVP_sha256()), 0);

    server_ctx_.reset(SSL_CTX_new(TLS_server_method()));
    ASSERT_EQ(SSL_CTX_use_certificate(server_ctx_.get(), cert.get()), 1);
    ASSERT_EQ(SSL_CTX_use_PrivateKey(server_ctx_.get(), key.get()), 1);

    ca_path_ = ::testing::TempDir() + "bench_tls_ca_" + std::to_string(::getpid()) + ".pem";
    FILE* f = std::fopen(ca_path_.c_str(), "w");
    ASSERT_NE(f, nullptr);
    PEM_write_X509(f, cert.get());
    ASSERT_EQ(std::fclose(f), 0);

    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds_), 0);
  }

  void TearDown() override {
    ::close(fds_[0]);
    ::close(fds_[1]);
    (void)std::remove(ca_path_.c_str());
  }

  // Steps both handshakes until the client's is done or fails.
  TlsIo handshake(SSL* client, SSL* server) {
    for (int i = 0; i < 100; ++i) {
      const TlsIo c = tls_connect(client);
      if (c != TlsIo::kWantRead && c != TlsIo::kWantWrite) return c;
      ERR_clear_error();
      (void)SSL_accept(server);
    }
    return TlsIo::kWantRead;
  }

  // A client trusting the server's certificate on fds_[0], the server on fds_[1].
  void make_pair() {
    TlsClientConfig config;
    config.ca_file = ca_path_;
    std::string error;
    client_ctx_ = make_tls_client_ctx(config, error);
    ASSERT_TRUE(client_ctx_) << error;
    client_.reset(SSL_new(client_ctx_.get()));
    server_.reset(SSL_new(server_ctx_.get()));
    SSL_set_fd(client_.get(), fds_[0]);
    SSL_set_fd(server_.get(), fds_[1]);
  }

  ssl::SslCtxPtr server_ctx_;
  ssl::SslCtxPtr client_ctx_;
  ssl::SslPtr client_;
  ssl::SslPtr server_;
  std::string ca_path_;
  int fds_[2]{-1, -1};
};

TEST_F(TlsClientLoopbackTest, HandshakeReadWriteAndClose) {
  ASSERT_NO_FATAL_FAILURE(make_pair());
  SSL* client = client_.get();
  SSL* server = server_.get();
  tls_expect_host(client, "127.0.0.1");

  EXPECT_EQ(tls_connect(client), TlsIo::kWantRead);  // the hello is out, no answer yet
  ASSERT_EQ(handshake(client, server), TlsIo::kOk) << tls_error_text();

  char buf[64];
  std::size_t got = 0;

  std::size_t put = 0;
  ASSERT_EQ(tls_write(client, "hello", 5, put), TlsIo::kOk);
  EXPECT_EQ(put, 5u);
  std::size_t n = 0;
  ASSERT_EQ(SSL_read_ex(server, buf, sizeof buf, &n), 1);
  EXPECT_EQ(std::string(buf, n), "hello");

  EXPECT_EQ(tls_read(client, buf, sizeof buf, got), TlsIo::kWantRead);
  EXPECT_EQ(got, 0u);
  ASSERT_EQ(SSL_write_ex(server, "world", 5, &n), 1);
  ASSERT_EQ(tls_read(client, buf, sizeof buf, got), TlsIo::kOk);
  EXPECT_EQ(std::string(buf, got), "world");

  (void)SSL_shutdown(server);
  EXPECT_EQ(tls_read(client, buf, sizeof buf, got), TlsIo::kClosed);
}

TEST_F(TlsClientLoopbackTest, TheWrongNameFailsTheHandshake) {
  ASSERT_NO_FATAL_FAILURE(make_pair());
  SSL* client = client_.get();
  SSL* server = server_.get();
  tls_expect_host(client, "127.0.0.2");
  EXPECT_EQ(handshake(client, server), TlsIo::kTlsError);
  EXPECT_EQ(SSL_get_verify_result(client), X509_V_ERR_IP_ADDRESS_MISMATCH);
  EXPECT_NE(tls_error_text(), "TLS error");
}

}  // namespace
}  // namespace tether::bench
