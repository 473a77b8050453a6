// What the HTTPS listener hands its WebSocket channels to. Two kinds of channel share the
// listener's machinery (queues, limits, closes): device UP channels at /up (tether.up.v1),
// handed to the DeviceHub on the server and to the GatewayRouter on a gateway, and the
// server's link at /link (tether.gateway.v1), which only a gateway serves.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/Result.h"

namespace tether::server {

using ConnectionId = std::uint64_t;

// The sending half of a set of channels, by connection id.
class UpTransport {
 public:
  virtual ~UpTransport() = default;
  // Queues one text message on the connection (the transport bounds its queue).
  virtual void send(ConnectionId connection, std::string text) = 0;
  // Closes the connection with a WebSocket close code; on_closed follows later.
  virtual void close(ConnectionId connection, int code, const std::string& reason) = 0;
};

class ChannelSink {
 public:
  virtual ~ChannelSink() = default;
  // Who is at the other end, from the client certificate of the TLS connection (which
  // already verified against the listener's CAs); an error refuses the upgrade.
  [[nodiscard]] virtual Result<std::string> identify(SSL* ssl) = 0;
  // Whether that peer may open a channel now; the error's message is logged.
  [[nodiscard]] virtual Status admit(const std::string& peer, const std::string& address) = 0;
  virtual void on_connected(ConnectionId connection, const std::string& peer,
                            const std::string& address) = 0;
  virtual void on_message(ConnectionId connection, std::string_view text) = 0;
  virtual void on_closed(ConnectionId connection) = 0;
};

// The device id (SPKI SHA-256) of the client certificate on a TLS connection.
[[nodiscard]] Result<std::string> peer_device_id(SSL* ssl);

}  // namespace tether::server
