// One request and one reply over TCP with the discovery framing (docs/protocol.md §3.6): a
// non-blocking connect on the server's lws loop, one frame out, one frame back, a deadline.
// Used for TCP range scans and registration requests to devices on port 30005.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "common/LwsFdWatcher.h"
#include "common/LwsLoop.h"
#include "common/Result.h"
#include "common/UniqueFd.h"
#include "server/Ipv4Subnet.h"

namespace tether::server {

class TcpExchange {
 public:
  // Builds the request once connected, knowing the local address the device sees us at.
  using RequestBuilder = std::function<Result<std::vector<std::uint8_t>>(Ipv4Address local)>;
  // The reply datagram (unframed), or why there is none: kUnavailable (refused,
  // unreachable, closed), kTimeout, kTooLarge / decoding errors of the frame.
  using Done = std::function<void(Result<std::vector<std::uint8_t>>)>;

  // `done` runs exactly once, from the loop (never from start()); the owner may destroy the
  // exchange only after it ran, and not from inside it (defer the destruction).
  [[nodiscard]] static Result<std::unique_ptr<TcpExchange>> start(
      lws_context* context, lws_vhost* vhost, Ipv4Address address, std::uint16_t port,
      std::chrono::milliseconds timeout, RequestBuilder request, Done done);
  ~TcpExchange();
  TcpExchange(const TcpExchange&) = delete;
  TcpExchange& operator=(const TcpExchange&) = delete;

  [[nodiscard]] bool finished() const noexcept { return finished_; }
  [[nodiscard]] Ipv4Address address() const noexcept { return address_; }

 private:
  TcpExchange() = default;
  void on_writable();
  void on_readable();
  void finish(Result<std::vector<std::uint8_t>> result);

  UniqueFd fd_;
  Ipv4Address address_ = 0;
  bool connected_ = false;
  bool finished_ = false;
  RequestBuilder request_;
  Done done_;
  std::vector<std::uint8_t> out_;
  std::size_t out_sent_ = 0;
  std::vector<std::uint8_t> in_;
  std::unique_ptr<LwsTimer> deadline_;
  std::unique_ptr<LwsFdWatcher> watcher_;
};

}  // namespace tether::server
