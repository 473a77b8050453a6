// The server's UDP socket for the LAN features: scan probes, online probes and magic
// packets go out from it (broadcast allowed); replies come back to it and are handed to
// whoever registered the reply's nonce. Watched on the server's lws loop.
#pragma once

#include <libwebsockets.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/LwsFdWatcher.h"
#include "common/Result.h"
#include "common/UniqueFd.h"
#include "protocol/DiscoveryDatagram.h"
#include "server/Ipv4Subnet.h"

namespace tether::server {

class DatagramSocket {
 public:
  // A decoded reply, its size and where it came from.
  struct Received {
    protocol::Datagram datagram;
    std::size_t size = 0;
    Ipv4Address from = 0;
    std::uint16_t from_port = 0;
  };
  using Handler = std::function<void(const Received&)>;

  // Binds 0.0.0.0 (or `bind_address`) on an ephemeral port.
  [[nodiscard]] static Result<std::unique_ptr<DatagramSocket>> open(
      lws_vhost* vhost, const std::string& bind_address);
  ~DatagramSocket();
  DatagramSocket(const DatagramSocket&) = delete;
  DatagramSocket& operator=(const DatagramSocket&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] Status send_to(Ipv4Address address, std::uint16_t port,
                               std::span<const std::uint8_t> payload);

  // Replies carrying `nonce` go to `handler` until forget(nonce).
  void expect(std::uint64_t nonce, Handler handler) { handlers_[nonce] = std::move(handler); }
  void forget(std::uint64_t nonce) { handlers_.erase(nonce); }
  // Datagrams that decoded but matched no nonce, or did not decode.
  [[nodiscard]] std::uint64_t stray_count() const noexcept { return undecodable_ + unmatched_; }
  // The same apart, and the replies handed to a handler (docs/metrics.md).
  [[nodiscard]] std::uint64_t undecodable_count() const noexcept { return undecodable_; }
  [[nodiscard]] std::uint64_t unmatched_count() const noexcept { return unmatched_; }
  [[nodiscard]] std::uint64_t matched_count() const noexcept { return matched_; }

 private:
  DatagramSocket() = default;
  void on_readable();

  UniqueFd fd_;
  std::uint16_t port_ = 0;
  std::unique_ptr<LwsFdWatcher> watcher_;
  std::unordered_map<std::uint64_t, Handler> handlers_;
  std::uint64_t undecodable_ = 0;
  std::uint64_t unmatched_ = 0;
  std::uint64_t matched_ = 0;
};

// A random nonce (never 0).
[[nodiscard]] std::uint64_t random_nonce();
// The nonce a datagram carries.
[[nodiscard]] std::uint64_t nonce_of(const protocol::Datagram& datagram);

}  // namespace tether::server
