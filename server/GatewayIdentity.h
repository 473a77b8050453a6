// The gateway's identity in its state directory, made once by `tether-gateway --join TOKEN`:
//
//   gateway.key (0600)  EC P-256 key, made here; never leaves the machine
//   gateway.crt         its TLS certificate (server usage, the gateway URL's host) then the CA
//   ca.crt              every CA the server trusts for devices (PEM bundle): device and
//                       server-link certificates are verified against it
//   gateway.json        {"name", "server_url", "gateway_url", "ca_fingerprint", "joined_at"};
//                       written last, it marks the gateway as joined
//
// Order matters for safety, as in the agent's enrollment: the token's CA fingerprint is
// checked against the server's chain before the secret is sent, and nothing is written until
// the server issued a certificate that checks out.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "common/Result.h"
#include "platform/OpenSsl.h"

namespace tether::server {

struct GatewayIdentityPaths {
  explicit GatewayIdentityPaths(std::string state_dir);
  std::string dir;
  std::string key;          // gateway.key
  std::string certificate;  // gateway.crt (leaf then CA)
  std::string ca_bundle;    // ca.crt
  std::string record;       // gateway.json
};

struct GatewayIdentity {
  std::string name;
  std::string server_url;      // wss://HOST:PORT the join went to
  std::string gateway_url;     // wss://HOST:PORT devices and the server use to reach us
  std::string ca_fingerprint;  // SHA-256 of the installation CA (DER), hex
  std::int64_t joined_at = 0;
  ssl::PkeyPtr key;
  GatewayIdentityPaths paths{""};

  // An identity made by join_gateway(). kNotFound ("this gateway has not joined yet: run
  // tether-gateway --join TOKEN") when there is none; other errors name the damaged file
  // (a key readable by others, a key that does not match its certificate...).
  [[nodiscard]] static Result<GatewayIdentity> load(const std::string& state_dir);
};

// Joins the installation named by `token` (tether-gw1.…): makes a key, sends a CSR with the
// token's secret to the server (pinning the token's CA fingerprint), checks and stores what
// comes back. kAlreadyExists when the state directory holds an identity already. The server's
// refusals come back as kUnauthenticated (unknown, expired or wrong token), kConflict (the
// token was used already), kBadValue, kUnavailable (429, 5xx, cannot connect).
[[nodiscard]] Result<GatewayIdentity> join_gateway(const std::string& state_dir,
                                                   const std::string& token,
                                                   std::chrono::milliseconds timeout);

}  // namespace tether::server
