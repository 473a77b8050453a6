#include "agent/EndpointProbe.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace tether::agent {

EndpointProbe::EndpointProbe(lws_context* context, lws_vhost* vhost)
    : vhost_(vhost), timer_(context, [this] {
        if (decided_) {
          finish(reachable_, why_);
        } else {
          finish(false, "no answer in time");
        }
      }) {}

EndpointProbe::~EndpointProbe() {
  cancel();
}

void EndpointProbe::cancel() {
  timer_.cancel();
  watcher_.reset();
  fd_.reset();
  done_ = nullptr;
  decided_ = false;
}

void EndpointProbe::start(const protocol::ServerUrl& url, std::chrono::milliseconds timeout,
                          Done done) {
  cancel();
  done_ = std::move(done);
  auto decide_now = [this](bool reachable, std::string why) {
    // Reported from the loop, so that the caller never sees `done` inside start().
    watcher_.reset();
    fd_.reset();
    decided_ = true;
    reachable_ = reachable;
    why_ = std::move(why);
    timer_.schedule(std::chrono::microseconds(1));
  };

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(url.port);
  const int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    decide_now(false, std::string("cannot resolve ") + url.host + ": " + ::gai_strerror(rc));
    return;
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(found, &::freeaddrinfo);
  fd_.reset(::socket(found->ai_family, found->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                     found->ai_protocol));
  if (!fd_) {
    decide_now(false, std::string("socket: ") + std::strerror(errno));
    return;
  }
  if (::connect(fd_.get(), found->ai_addr, found->ai_addrlen) == 0) {
    decide_now(true, "");
    return;
  }
  if (errno != EINPROGRESS) {
    decide_now(false, std::strerror(errno));
    return;
  }
  // Writable (or readable, or hung up) once the handshake has an outcome.
  auto watcher = LwsFdWatcher::watch(
      vhost_, fd_.get(), [this] { check(); }, [this] { check(); });
  if (!watcher.ok()) {
    decide_now(false, watcher.error().message);
    return;
  }
  watcher_ = std::move(watcher).value();
  watcher_->want_write();
  timer_.schedule(std::chrono::duration_cast<std::chrono::microseconds>(timeout));
}

void EndpointProbe::check() {
  if (!fd_ || decided_) return;
  pollfd p{fd_.get(), POLLOUT, 0};
  if (::poll(&p, 1, 0) <= 0) {
    if (watcher_) watcher_->want_write();
    return;  // not yet
  }
  int error = 0;
  socklen_t len = sizeof error;
  if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
  if (error == 0 && (p.revents & (POLLERR | POLLHUP)) != 0) error = ECONNRESET;
  // Reported from the timer: the watcher must not be destroyed inside its own callback.
  decided_ = true;
  reachable_ = error == 0;
  why_ = error == 0 ? std::string() : std::string(std::strerror(error));
  timer_.schedule(std::chrono::microseconds(1));
}

void EndpointProbe::finish(bool reachable, std::string why) {
  Done done = std::move(done_);
  cancel();
  if (done) done(reachable, why);
}

}  // namespace tether::agent
