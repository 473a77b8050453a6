#include "server/TcpExchange.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "protocol/DiscoveryDatagram.h"

namespace tether::server {

Result<std::unique_ptr<TcpExchange>> TcpExchange::start(lws_context* context, lws_vhost* vhost,
                                                        Ipv4Address address, std::uint16_t port,
                                                        std::chrono::milliseconds timeout,
                                                        RequestBuilder request, Done done) {
  std::unique_ptr<TcpExchange> self(new TcpExchange());
  self->address_ = address;
  self->request_ = std::move(request);
  self->done_ = std::move(done);
  self->fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!self->fd_) {
    return make_error(Errc::kIo, std::string("cannot open a TCP socket: ") + std::strerror(errno));
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(address);
  sa.sin_port = htons(port);
  if (::connect(self->fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 &&
      errno != EINPROGRESS) {
    // Reported from the loop like any other failure, so callers see one path.
    const std::string why = std::strerror(errno);
    self->connected_ = false;
    self->out_.clear();
    self->deadline_ = std::make_unique<LwsTimer>(
        context, [raw = self.get(), why] { raw->finish(make_error(Errc::kUnavailable, why)); });
    self->deadline_->schedule(std::chrono::microseconds(1));
    return self;
  }
  TcpExchange* raw = self.get();
  self->deadline_ = std::make_unique<LwsTimer>(
      context, [raw] { raw->finish(make_error(Errc::kTimeout, "no answer in time")); });
  self->deadline_->schedule(timeout);
  TETHER_ASSIGN_OR_RETURN(self->watcher_, LwsFdWatcher::watch(
                                              vhost, self->fd_.get(), [raw] { raw->on_readable(); },
                                              [raw] { raw->on_writable(); }));
  self->watcher_->want_write();
  return self;
}

TcpExchange::~TcpExchange() = default;

void TcpExchange::finish(Result<std::vector<std::uint8_t>> result) {
  if (finished_) return;
  finished_ = true;
  if (deadline_) deadline_->cancel();
  if (watcher_) (void)::shutdown(fd_.get(), SHUT_RDWR);
  Done done = std::move(done_);
  if (done) done(std::move(result));
}

void TcpExchange::on_writable() {
  if (finished_) return;
  if (!connected_) {
    int error = 0;
    socklen_t len = sizeof error;
    if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
    if (error != 0) {
      finish(make_error(Errc::kUnavailable, std::strerror(error)));
      return;
    }
    connected_ = true;
    sockaddr_in local{};
    socklen_t local_len = sizeof local;
    (void)::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&local), &local_len);
    auto request = request_(ntohl(local.sin_addr.s_addr));
    if (!request.ok()) {
      finish(request.error());
      return;
    }
    out_ = protocol::frame_for_tcp(*request);
  }
  while (out_sent_ < out_.size()) {
    const ssize_t n =
        ::send(fd_.get(), out_.data() + out_sent_, out_.size() - out_sent_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        watcher_->want_write();
        return;
      }
      finish(make_error(Errc::kUnavailable, std::strerror(errno)));
      return;
    }
    out_sent_ += static_cast<std::size_t>(n);
  }
}

void TcpExchange::on_readable() {
  if (finished_) return;
  std::uint8_t buf[1024];
  const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    finish(make_error(Errc::kUnavailable, std::strerror(errno)));
    return;
  }
  if (n == 0) {
    finish(make_error(Errc::kUnavailable, "closed without an answer"));
    return;
  }
  in_.insert(in_.end(), buf, buf + n);
  auto length = protocol::tcp_frame_length(in_);
  if (!length.ok()) {
    finish(length.error());
    return;
  }
  if (!*length) return;
  std::vector<std::uint8_t> datagram(
      in_.begin() + protocol::kTcpFrameHeader,
      in_.begin() + protocol::kTcpFrameHeader + static_cast<std::ptrdiff_t>(**length));
  finish(std::move(datagram));
}

}  // namespace tether::server
