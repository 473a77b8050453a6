#include "server/DatagramSocket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace tether::server {

std::uint64_t random_nonce() {
  std::uint64_t nonce = 0;
  while (nonce == 0) {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&nonce), sizeof nonce) != 1) {
      nonce =
          static_cast<std::uint64_t>(std::rand()) << 32 | static_cast<std::uint64_t>(std::rand());
    }
  }
  return nonce;
}

std::uint64_t nonce_of(const protocol::Datagram& datagram) {
  return std::visit([](const auto& d) { return d.nonce; }, datagram);
}

Result<std::unique_ptr<DatagramSocket>> DatagramSocket::open(lws_vhost* vhost,
                                                             const std::string& bind_address) {
  std::unique_ptr<DatagramSocket> self(new DatagramSocket());
  self->fd_.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!self->fd_) {
    return make_error(Errc::kIo, std::string("cannot open a UDP socket: ") + std::strerror(errno));
  }
  const int on = 1;
  (void)::setsockopt(self->fd_.get(), SOL_SOCKET, SO_BROADCAST, &on, sizeof on);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  if (auto a = parse_ipv4(bind_address); a && *a != 0) sa.sin_addr.s_addr = htonl(*a);
  if (::bind(self->fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    return make_error(Errc::kIo,
                      std::string("cannot bind the UDP socket: ") + std::strerror(errno));
  }
  socklen_t len = sizeof sa;
  (void)::getsockname(self->fd_.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  self->port_ = ntohs(sa.sin_port);
  DatagramSocket* raw = self.get();
  TETHER_ASSIGN_OR_RETURN(
      self->watcher_, LwsFdWatcher::watch(vhost, self->fd_.get(), [raw] { raw->on_readable(); }));
  return self;
}

DatagramSocket::~DatagramSocket() = default;

Status DatagramSocket::send_to(Ipv4Address address, std::uint16_t port,
                               std::span<const std::uint8_t> payload) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(address);
  sa.sin_port = htons(port);
  if (::sendto(fd_.get(), payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&sa),
               sizeof sa) < 0) {
    return make_error(Errc::kIo, "cannot send to " + ipv4_to_string(address) + ":" +
                                     std::to_string(port) + ": " + std::strerror(errno));
  }
  return {};
}

void DatagramSocket::on_readable() {
  // Bounded per wakeup so that a flood cannot starve the loop.
  for (int i = 0; i < 256; ++i) {
    std::uint8_t buf[protocol::kMaxDatagramSize + 1];
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    const ssize_t n =
        ::recvfrom(fd_.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&sa), &len);
    if (n < 0) return;  // EAGAIN (or an ICMP error reported on the socket): done for now
    auto decoded = protocol::decode_datagram(std::span<const std::uint8_t>(buf, std::size_t(n)));
    if (!decoded.ok()) {
      ++undecodable_;
      continue;
    }
    auto it = handlers_.find(nonce_of(*decoded));
    if (it == handlers_.end()) {
      ++unmatched_;
      continue;
    }
    ++matched_;
    Received received{std::move(*decoded), std::size_t(n), ntohl(sa.sin_addr.s_addr),
                      ntohs(sa.sin_port)};
    Handler handler = it->second;  // a copy: the handler may forget() itself
    handler(received);
  }
}

}  // namespace tether::server
