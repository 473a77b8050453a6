#include "agent/DiscoveryTcpListener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/Log.h"

namespace tether::agent {

DiscoveryTcpListener::DiscoveryTcpListener(lws_context* ctx, lws_vhost* vhost,
                                           DiscoveryTcpOptions options,
                                           DiscoveryResponder& responder,
                                           RegisterRequestHandler on_register)
    : ctx_(ctx),
      vhost_(vhost),
      options_(std::move(options)),
      responder_(responder),
      on_register_(std::move(on_register)),
      reaper_(ctx, [this] { reap(); }) {}

DiscoveryTcpListener::~DiscoveryTcpListener() = default;

Result<std::unique_ptr<DiscoveryTcpListener>> DiscoveryTcpListener::start(
    lws_context* ctx, lws_vhost* watch_vhost, DiscoveryTcpOptions options,
    DiscoveryResponder& responder, RegisterRequestHandler on_register) {
  TETHER_ASSIGN_OR_RETURN(std::uint32_t address, parse_ipv4(options.address));
  std::unique_ptr<DiscoveryTcpListener> l(new DiscoveryTcpListener(
      ctx, watch_vhost, std::move(options), responder, std::move(on_register)));
  l->listen_fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!l->listen_fd_) return make_error(Errc::kIo, std::string("socket: ") + std::strerror(errno));
  const int on = 1;
  ::setsockopt(l->listen_fd_.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(l->options_.port);
  sin.sin_addr.s_addr = htonl(address);
  if (::bind(l->listen_fd_.get(), reinterpret_cast<const sockaddr*>(&sin), sizeof sin) != 0 ||
      ::listen(l->listen_fd_.get(), 32) != 0) {
    return make_error(Errc::kUnavailable, "cannot listen on TCP " + l->options_.address + ":" +
                                              std::to_string(l->options_.port) + ": " +
                                              std::strerror(errno));
  }
  DiscoveryTcpListener* raw = l.get();
  TETHER_ASSIGN_OR_RETURN(l->watcher_, LwsFdWatcher::watch(watch_vhost, l->listen_fd_.get(),
                                                           [raw] { raw->on_accept(); }));
  return l;
}

void DiscoveryTcpListener::on_accept() {
  for (int i = 0; i < 16; ++i) {
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    UniqueFd fd(::accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&peer), &len,
                          SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;
    std::size_t open = 0;
    for (const auto& c : connections_) open += c->closed ? 0 : 1;
    if (open >= options_.max_connections) {
      log::debug("discovery: too many TCP connections; closed one from " +
                 ipv4_to_string(ntohl(peer.sin_addr.s_addr)));
      continue;  // fd closes here
    }
    auto c = std::make_unique<Connection>(ctx_, this);
    c->peer = ntohl(peer.sin_addr.s_addr);
    sockaddr_in local{};
    socklen_t local_len = sizeof local;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &local_len) == 0) {
      c->local = ntohl(local.sin_addr.s_addr);
    }
    c->fd = std::move(fd);
    Connection* raw = c.get();
    auto watcher = LwsFdWatcher::watch(vhost_, c->fd.get(), [this, raw] { on_readable(*raw); });
    if (!watcher.ok()) {
      log::warning("discovery: " + watcher.error().message);
      continue;
    }
    c->watcher = std::move(watcher).value();
    c->deadline.schedule(
        std::chrono::duration_cast<std::chrono::microseconds>(options_.read_timeout));
    connections_.push_back(std::move(c));
  }
}

void DiscoveryTcpListener::on_readable(Connection& c) {
  if (c.closed) return;
  std::uint8_t buf[2048];
  const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) return close(c);
  c.buffer.insert(c.buffer.end(), buf, buf + n);
  auto length = protocol::tcp_frame_length(c.buffer);
  if (!length.ok()) return close(c);
  if (!*length) return;  // more bytes needed
  const std::size_t size = **length;
  answer(c, std::span<const std::uint8_t>(c.buffer).subspan(protocol::kTcpFrameHeader, size));
  close(c);
}

void DiscoveryTcpListener::answer(Connection& c, std::span<const std::uint8_t> datagram) {
  auto decoded = protocol::decode_datagram(datagram);
  if (!decoded.ok()) {
    log::debug("discovery: bad TCP request from " + ipv4_to_string(c.peer) + ": " +
               decoded.error().message);
    return;
  }
  Result<std::vector<std::uint8_t>> reply = make_error(Errc::kInternal, "no reply");
  if (const auto* scan = std::get_if<protocol::ScanProbe>(&*decoded)) {
    reply = responder_.answer_tcp_scan(*scan, datagram.size(), c.local);
  } else if (const auto* reg = std::get_if<protocol::RegisterRequest>(&*decoded)) {
    responder_.count_register_request();
    protocol::RegisterReply r;
    r.nonce = reg->nonce;
    r.status = on_register_(*reg, c.peer);
    for (const auto& i : responder_.interfaces()) {
      if (i.mac &&
          std::find(i.addresses.begin(), i.addresses.end(), c.local) != i.addresses.end()) {
        r.mac = *i.mac;
      }
    }
    // The stream is not spoofable, so the size rule need not bind here; a request is always
    // larger than this 23-byte reply anyway.
    reply = protocol::encode_register_reply(r, protocol::kMaxDatagramSize);
  } else {
    log::debug("discovery: TCP request from " + ipv4_to_string(c.peer) +
               " is neither a scan probe nor a registration request");
    return;
  }
  if (!reply.ok()) {
    log::debug("discovery: no TCP reply to " + ipv4_to_string(c.peer) + ": " +
               reply.error().message);
    return;
  }
  const auto framed = protocol::frame_for_tcp(*reply);
  // A new connection's send buffer is empty and a frame is at most 1202 bytes: one send.
  if (::send(c.fd.get(), framed.data(), framed.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
      static_cast<ssize_t>(framed.size())) {
    log::debug("discovery: could not send the TCP reply to " + ipv4_to_string(c.peer));
  }
}

void DiscoveryTcpListener::close(Connection& c) {
  if (c.closed) return;
  c.closed = true;
  c.deadline.cancel();
  ::shutdown(c.fd.get(), SHUT_RDWR);
  if (!reaper_.pending()) reaper_.schedule(std::chrono::microseconds(0));
}

void DiscoveryTcpListener::reap() {
  connections_.remove_if([](const auto& c) { return c->closed; });
}

}  // namespace tether::agent
