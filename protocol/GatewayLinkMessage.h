// The link between tether-server and a gateway (docs/protocol.md §6): one WebSocket
// (tether.gateway.v1) that the server opens to the gateway, carrying JSON text messages
// {"v":1,"t":TYPE,...}. The gateway reports device channels and forwards their UP messages
// unchanged; the server tells the gateway which devices may connect, answers forwarded
// enrollments and opens shadowing tunnels. Pure codec: no I/O, bounded like every decoder.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/Result.h"

namespace tether::protocol {

inline constexpr int kLinkVersion = 1;
inline constexpr const char* kLinkSubprotocol = "tether.gateway.v1";
inline constexpr const char* kLinkPath = "/link";
inline constexpr std::size_t kLinkMaxBytes = 2 * 1024 * 1024;
inline constexpr std::size_t kLinkAllowChunk = 1000;  // device ids per "allow" message

// ---- gateway -> server --------------------------------------------------------------------
struct LinkHello {  // "hello": first message on a new link
  std::string gateway;
  std::string version;
  std::uint64_t devices = 0;  // device channels open now
};
struct LinkConnected {  // "connected": a device channel is open (and the server is told)
  std::uint64_t conn = 0;
  std::string device;   // 64 hex
  std::string address;  // the device's address as the gateway sees it
};
struct LinkClosed {  // "closed": a device channel ended
  std::uint64_t conn = 0;
};
struct LinkHttp {  // "http": an enrollment request to pass on
  std::uint64_t id = 0;
  std::string method;
  std::string path;
  std::string body;
  std::string address;
};
struct LinkTunnelEvent {  // "tunnel_event": device_joined, viewer_joined, spliced, ended
  std::string session;
  std::string event;
  std::string reason;
};

// ---- server -> gateway --------------------------------------------------------------------
struct LinkAllow {     // "allow": devices that may connect
  bool reset = false;  // the first chunk of a full list: start over
  bool done = true;    // the last chunk: the list (reset or added to) is complete
  std::vector<std::string> devices;
};
struct LinkRevoke {  // "revoke": refuse this device from now on, close its channel
  std::string device;
};
struct LinkClose {  // "close": close one device channel
  std::uint64_t conn = 0;
  int code = 1000;
  std::string reason;
};
struct LinkHttpResult {  // "http_result"
  std::uint64_t id = 0;
  int status = 500;
  std::string content_type;
  std::string body;
};
struct LinkTunnelOpen {  // "tunnel_open"
  std::string session;
  std::string device;
  std::string device_token;
  std::string viewer_token;
  std::int64_t ttl = 30;  // seconds
};
struct LinkTunnelClose {  // "tunnel_close"
  std::string session;
  std::string reason;
};

// ---- both ways ----------------------------------------------------------------------------
struct LinkUp {  // "up": one UP message of a device channel, unchanged
  std::uint64_t conn = 0;
  std::string text;
};

using LinkMessage =
    std::variant<LinkHello, LinkConnected, LinkClosed, LinkHttp, LinkTunnelEvent, LinkAllow,
                 LinkRevoke, LinkClose, LinkHttpResult, LinkTunnelOpen, LinkTunnelClose, LinkUp>;

[[nodiscard]] Result<LinkMessage> decode_link_message(std::string_view text);
[[nodiscard]] std::string encode_link_message(const LinkMessage& message);
[[nodiscard]] std::string_view link_message_type(const LinkMessage& message) noexcept;

}  // namespace tether::protocol
