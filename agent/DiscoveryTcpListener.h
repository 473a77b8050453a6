// TCP on discovery.port (30005): range scans across routers and registration requests. One
// length-framed request per connection (docs/protocol.md §3.6), read within a deadline, one
// reply, then the connection is closed. Connections beyond the cap are closed at once.
#pragma once

#include <libwebsockets.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "agent/DiscoveryResponder.h"
#include "common/LwsFdWatcher.h"
#include "common/LwsLoop.h"
#include "common/Result.h"
#include "common/UniqueFd.h"
#include "protocol/DiscoveryDatagram.h"

namespace tether::agent {

// Decides a registration request from `source` (host order) and starts the work when it
// accepts; returns the status to answer with.
using RegisterRequestHandler =
    std::function<protocol::RegisterStatus(const protocol::RegisterRequest&, std::uint32_t source)>;

struct DiscoveryTcpOptions {
  std::string address = "0.0.0.0";
  std::uint16_t port = kDiscoveryPort;
  std::chrono::milliseconds read_timeout{5000};
  std::size_t max_connections = 16;
};

class DiscoveryTcpListener {
 public:
  [[nodiscard]] static Result<std::unique_ptr<DiscoveryTcpListener>> start(
      lws_context* ctx, lws_vhost* watch_vhost, DiscoveryTcpOptions options,
      DiscoveryResponder& responder, RegisterRequestHandler on_register);
  ~DiscoveryTcpListener();

 private:
  struct Connection {
    Connection(lws_context* ctx, DiscoveryTcpListener* owner)
        : deadline(ctx, [this, owner] { owner->close(*this); }) {}
    UniqueFd fd;
    std::unique_ptr<LwsFdWatcher> watcher;
    LwsTimer deadline;
    std::vector<std::uint8_t> buffer;
    std::uint32_t peer = 0;
    std::uint32_t local = 0;
    bool closed = false;
  };

  DiscoveryTcpListener(lws_context* ctx, lws_vhost* vhost, DiscoveryTcpOptions options,
                       DiscoveryResponder& responder, RegisterRequestHandler on_register);
  void on_accept();
  void on_readable(Connection& c);
  void answer(Connection& c, std::span<const std::uint8_t> datagram);
  void close(Connection& c);
  void reap();

  lws_context* ctx_;
  lws_vhost* vhost_;
  DiscoveryTcpOptions options_;
  DiscoveryResponder& responder_;
  RegisterRequestHandler on_register_;
  UniqueFd listen_fd_;
  std::unique_ptr<LwsFdWatcher> watcher_;
  std::list<std::unique_ptr<Connection>> connections_;
  // Closed connections are destroyed from a timer, never inside their own watcher callback.
  LwsTimer reaper_;
};

}  // namespace tether::agent
