// Shared pieces for the server's unit tests: a CA in a temp dir, device keys and CSRs.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "platform/Pki.h"
#include "server/CertificateAuthority.h"
#include "server/ChannelSink.h"

namespace tether::server::testing {

inline CertificateAuthority open_ca(const std::string& dir,
                                    std::chrono::seconds device_lifetime = std::chrono::hours(24),
                                    std::vector<std::string> names = {"localhost", "127.0.0.1"}) {
  CertificateAuthorityOptions options;
  options.state_dir = dir;
  options.server_names = std::move(names);
  options.device_cert_lifetime = device_lifetime;
  auto ca = CertificateAuthority::open(options);
  if (!ca.ok()) {
    ADD_FAILURE() << ca.error().message;
    std::abort();
  }
  return std::move(ca).value();
}

struct TestDeviceKey {
  ssl::PkeyPtr key;
  std::string id;
  std::string csr;
};

inline TestDeviceKey make_device_key() {
  TestDeviceKey out;
  out.key = pki::generate_p256_key().value();
  out.id = pki::to_hex(pki::spki_sha256(out.key.get()).value());
  out.csr = pki::make_csr_pem(out.key.get(), "device").value();
  return out;
}

// An UP transport that keeps what the hub sends (parsed) and which channels it closes.
struct RecordingUpTransport : UpTransport {
  void send(ConnectionId c, std::string text) override {
    sent.emplace_back(c, nlohmann::json::parse(text));
  }
  void close(ConnectionId c, int code, const std::string&) override {
    closed.emplace_back(c, code);
  }
  std::vector<std::pair<ConnectionId, nlohmann::json>> sent;
  std::vector<std::pair<ConnectionId, int>> closed;
};

}  // namespace tether::server::testing
