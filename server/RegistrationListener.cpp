#include "server/RegistrationListener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/Hex.h"
#include "common/Log.h"
#include "server/Ipv4Subnet.h"

namespace tether::server {
namespace {

constexpr std::size_t kMaxConnections = 64;
constexpr auto kSweepInterval = std::chrono::milliseconds(250);

bool all_zero(const protocol::Sha256& bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; });
}

}  // namespace

RegistrationListener::RegistrationListener(lws_context* context, lws_vhost* vhost,
                                           RegistrationListenerOptions options,
                                           EnrollmentService& enrollment,
                                           PendingRegistrations& pending,
                                           std::function<bool()> auto_registration,
                                           IssuedHook on_issued)
    : context_(context),
      vhost_(vhost),
      options_(std::move(options)),
      enrollment_(enrollment),
      pending_(pending),
      auto_registration_(std::move(auto_registration)),
      on_issued_(std::move(on_issued)),
      per_source_(options_.per_source_per_minute),
      total_(options_.total_per_minute, 1) {}

Result<std::unique_ptr<RegistrationListener>> RegistrationListener::start(
    lws_context* context, lws_vhost* vhost, RegistrationListenerOptions options,
    EnrollmentService& enrollment, PendingRegistrations& pending,
    std::function<bool()> auto_registration, IssuedHook on_issued) {
  std::unique_ptr<RegistrationListener> self(
      new RegistrationListener(context, vhost, std::move(options), enrollment, pending,
                               std::move(auto_registration), std::move(on_issued)));
  const auto& opt = self->options_;
  const auto host = parse_ipv4(opt.host);
  if (!host) {
    return make_error(Errc::kInvalidArgument,
                      "the registration listener needs an IPv4 address, not " + opt.host);
  }
  self->listen_fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!self->listen_fd_) {
    return make_error(Errc::kIo, std::string("cannot open a TCP socket: ") + std::strerror(errno));
  }
  const int on = 1;
  (void)::setsockopt(self->listen_fd_.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(*host);
  sa.sin_port = htons(opt.port);
  if (::bind(self->listen_fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      ::listen(self->listen_fd_.get(), 64) != 0) {
    return make_error(Errc::kUnavailable, "cannot listen on " + opt.host + ":" +
                                              std::to_string(opt.port) + ": " +
                                              std::strerror(errno));
  }
  socklen_t len = sizeof sa;
  (void)::getsockname(self->listen_fd_.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  self->port_ = ntohs(sa.sin_port);
  RegistrationListener* raw = self.get();
  self->sweeper_ = std::make_unique<LwsTimer>(context, [raw] { raw->sweep(); });
  TETHER_ASSIGN_OR_RETURN(
      self->listen_watcher_,
      LwsFdWatcher::watch(vhost, self->listen_fd_.get(), [raw] { raw->on_acceptable(); }));
  return self;
}

RegistrationListener::~RegistrationListener() = default;

void RegistrationListener::on_acceptable() {
  for (;;) {
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    UniqueFd fd(::accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&peer), &len,
                          SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;
    if (connections_.size() >= kMaxConnections) {
      ++counters_.refused;
      continue;  // closed: too many at once
    }
    Connection& conn = connections_.emplace_back();
    conn.fd = std::move(fd);
    conn.address = ipv4_to_string(ntohl(peer.sin_addr.s_addr));
    conn.deadline = std::chrono::steady_clock::now() + options_.connection_timeout;
    Connection* c = &conn;
    auto watcher = LwsFdWatcher::watch(
        vhost_, conn.fd.get(), [this, c] { on_readable(*c); }, [this, c] { on_writable(*c); });
    if (!watcher.ok()) {
      conn.closed = true;
      continue;
    }
    conn.watcher = std::move(*watcher);
  }
  if (!sweeper_->pending()) sweeper_->schedule(kSweepInterval);
}

void RegistrationListener::on_readable(Connection& conn) {
  if (conn.closed || !conn.out.empty()) return;
  std::uint8_t buf[1024];
  const ssize_t n = ::recv(conn.fd.get(), buf, sizeof buf, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n <= 0) {
    close(conn);
    return;
  }
  conn.in.insert(conn.in.end(), buf, buf + n);
  auto length = protocol::tcp_frame_length(conn.in);
  if (!length.ok()) {
    ++counters_.malformed;
    log::info("registration request from " + conn.address + " refused: " + length.error().message);
    close(conn);
    return;
  }
  if (!*length) return;
  auto decoded = protocol::decode_datagram(
      std::span<const std::uint8_t>(conn.in).subspan(protocol::kTcpFrameHeader, **length));
  const auto* request = decoded.ok() ? std::get_if<protocol::TokenRequest>(&*decoded) : nullptr;
  if (request == nullptr) {
    ++counters_.malformed;
    log::info("registration request from " + conn.address + " refused: " +
              (decoded.ok() ? std::string("not a token request") : decoded.error().message));
    close(conn);
    return;
  }
  answer(conn, *request);
}

void RegistrationListener::answer(Connection& conn, const protocol::TokenRequest& request) {
  ++counters_.requests;
  const auto now = std::chrono::steady_clock::now();
  const std::string device_id = hex_encode(request.device_id);
  auto mac = protocol::MacAddress::from_bytes(request.mac);
  const std::string mac_text = mac.ok() ? mac->to_string() : "";

  TokenRequestFacts facts;
  // Both limits are counted for every request, so that one source cannot hide in the total.
  const bool source_limited = per_source_.take(conn.address, now).has_value();
  const bool total_limited = total_.take("all", now).has_value();
  facts.rate_limited = source_limited || total_limited;
  facts.fingerprint_zero = all_zero(request.server_fingerprint);
  facts.fingerprint_matches = request.server_fingerprint == options_.ca_fingerprint;
  facts.auto_registration = auto_registration_ && auto_registration_();
  // Only a request that would otherwise be answered uses up a pending registration.
  if (!facts.rate_limited && (facts.fingerprint_zero || facts.fingerprint_matches)) {
    facts.pending = pending_.take(conn.address, mac_text, now);
  }
  protocol::TokenReply reply;
  reply.nonce = request.nonce;
  reply.status = decide_token(facts);
  std::string why;
  if (reply.status == protocol::TokenStatus::kIssued) {
    auto token = enrollment_.create_token(options_.token_ttl, mac_text);
    if (!token.ok()) {
      reply.status = protocol::TokenStatus::kRefused;
      why = " (cannot make a token: " + token.error().message + ")";
    } else {
      reply.token = token->token;
      why = std::string(facts.pending ? " (scan registration" : " (auto-registration") +
            ", token " + token->id + ")";
    }
  }
  switch (reply.status) {
    case protocol::TokenStatus::kIssued: ++counters_.issued; break;
    case protocol::TokenStatus::kDisabled: ++counters_.disabled; break;
    case protocol::TokenStatus::kRefused: ++counters_.refused; break;
    case protocol::TokenStatus::kWrongServer: ++counters_.wrong_server; break;
  }
  log::notice("registration token request from " + conn.address + " (device " +
              device_id.substr(0, 12) + ", MAC " + (mac_text.empty() ? "-" : mac_text) +
              ", hostname \"" + request.hostname + "\"): " + token_status_name(reply.status) + why);
  auto encoded = protocol::encode_token_reply(reply);
  if (!encoded.ok()) {
    close(conn);
    return;
  }
  conn.out = protocol::frame_for_tcp(*encoded);
  if (reply.status == protocol::TokenStatus::kIssued && on_issued_) {
    on_issued_(device_id, conn.address, mac_text);
  }
  on_writable(conn);
}

void RegistrationListener::on_writable(Connection& conn) {
  if (conn.closed || conn.out.empty()) return;
  while (conn.sent < conn.out.size()) {
    const ssize_t n = ::send(conn.fd.get(), conn.out.data() + conn.sent,
                             conn.out.size() - conn.sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        conn.watcher->want_write();
        return;
      }
      close(conn);
      return;
    }
    conn.sent += static_cast<std::size_t>(n);
  }
  close(conn);
}

void RegistrationListener::close(Connection& conn) {
  if (conn.closed) return;
  conn.closed = true;
  (void)::shutdown(conn.fd.get(), SHUT_RDWR);
  if (!sweeper_->pending()) sweeper_->schedule(std::chrono::milliseconds(1));
}

void RegistrationListener::sweep() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (!it->closed && now >= it->deadline) {
      log::info("registration request from " + it->address + ": no request in time");
      it->closed = true;
    }
    it = it->closed ? connections_.erase(it) : std::next(it);
  }
  if (!connections_.empty()) sweeper_->schedule(kSweepInterval);
}

}  // namespace tether::server
