// The gateway registry's REST routes (docs/api.md, Gateways): an admin registers a gateway
// by name and URL and gets a one-time join token; the gateway redeems the token's secret
// (POST /api/v1/gateways/join, no admin token: the secret authenticates) for its TLS
// certificate, issued by the installation CA for the host of its URL. Only SHA-256(secret)
// is stored, and the secret is single-use and expires.
//
// The server's outbound links to joined gateways are someone else's: they learn of every
// change through on_gateways_changed and report their state through link_info.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "server/CertificateAuthority.h"
#include "server/HttpMessage.h"
#include "server/RateLimiter.h"
#include "server/Store.h"

namespace tether::server {

// What the server's link to a gateway is doing, for `gateway list`.
struct GatewayLinkInfo {
  std::string state = "disconnected";  // "connected" or "disconnected"
  std::size_t devices = 0;             // devices connected through it
};

struct GatewayApiSettings {
  std::string server_url;  // wss://HOST:PORT of this server, put into join tokens
  std::chrono::seconds default_join_ttl{std::chrono::hours(24)};
  int join_rate_per_minute = 30;
};

class GatewayApi {
 public:
  using WallClock = std::function<std::int64_t()>;  // unix seconds

  GatewayApi(Store& store, const CertificateAuthority& ca, GatewayApiSettings settings,
             WallClock wall_clock = {});

  // Whether the route (the path below /api/v1/, split at '/') is ours, and whether it needs
  // the admin token (every one but the join).
  [[nodiscard]] static bool owns(const std::vector<std::string>& parts);
  [[nodiscard]] static bool needs_admin(const std::vector<std::string>& parts);

  // Answers one of our routes (the caller checked the admin token when needs_admin()).
  [[nodiscard]] HttpResponse route(const HttpRequest& request,
                                   const std::vector<std::string>& parts);

  // Called after every change of the registry (added, joined, removed).
  void set_on_gateways_changed(std::function<void()> hook) { on_changed_ = std::move(hook); }
  // The link state of a joined gateway; without it every link shows "disconnected".
  void set_link_info(std::function<GatewayLinkInfo(const std::string& name)> hook) {
    link_info_ = std::move(hook);
  }

 private:
  HttpResponse add(const HttpRequest& request);
  HttpResponse list();
  HttpResponse remove(const std::string& name);
  HttpResponse join(const HttpRequest& request);
  std::int64_t now() const;
  void changed() const;

  Store& store_;
  const CertificateAuthority& ca_;
  GatewayApiSettings settings_;
  WallClock wall_clock_;
  RateLimiter limiter_;
  std::function<void()> on_changed_;
  std::function<GatewayLinkInfo(const std::string&)> link_info_;
};

// Messages the join endpoint returns (docs/api.md), shared with tests.
inline constexpr const char* kUnknownJoinTokenMessage = "unknown gateway or join token";
inline constexpr const char* kExpiredJoinTokenMessage = "this gateway join token has expired";
inline constexpr const char* kAlreadyJoinedMessage =
    "this gateway has already joined (its join token was used); remove it and add it again "
    "for a new token";

}  // namespace tether::server
