#include "agent/DiscoveryRegistrar.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "agent/DeviceIdentity.h"
#include "agent/DiscoveryResponder.h"
#include "agent/Enroller.h"
#include "agent/SystemInfo.h"
#include "common/Config.h"
#include "common/Hex.h"
#include "common/Log.h"
#include "common/UniqueFd.h"
#include "protocol/EnrollmentToken.h"

namespace tether::agent {
namespace {

using Clock = std::chrono::steady_clock;

bool all_zero(const protocol::Sha256& f) {
  return std::all_of(f.begin(), f.end(), [](std::uint8_t b) { return b == 0; });
}

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<std::int64_t>(0, left.count()));
}

const char* token_status_text(protocol::TokenStatus s) {
  switch (s) {
    case protocol::TokenStatus::kIssued: return "issued";
    case protocol::TokenStatus::kDisabled:
      return "the server does not register this device (no pending request, auto-registration "
             "off)";
    case protocol::TokenStatus::kRefused: return "the server refused (rate limited)";
    case protocol::TokenStatus::kWrongServer: return "the server is not the one expected";
  }
  return "unknown";
}

}  // namespace

protocol::RegisterStatus decide_register_request(const protocol::RegisterRequest& request,
                                                 bool enrolled,
                                                 const std::vector<std::string>& trusted,
                                                 bool accept_registration, bool busy) {
  if (enrolled) {
    const std::string fingerprint = hex_encode(request.server_fingerprint);
    const bool ours = std::find(trusted.begin(), trusted.end(), fingerprint) != trusted.end();
    return ours ? protocol::RegisterStatus::kAlreadyRegistered
                : protocol::RegisterStatus::kRegisteredElsewhere;
  }
  if (!accept_registration) return protocol::RegisterStatus::kDisabled;
  if (busy) return protocol::RegisterStatus::kBusy;
  return protocol::RegisterStatus::kAccepted;
}

Result<std::string> request_enrollment_token(const RegistrationTarget& target,
                                             const protocol::TokenRequest& request_in,
                                             std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(target.port);
  if (const int rc = ::getaddrinfo(target.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return make_error(Errc::kUnavailable,
                      "cannot resolve " + target.host + ": " + ::gai_strerror(rc));
  }
  sockaddr_in to{};
  std::memcpy(&to, found->ai_addr, sizeof to);
  ::freeaddrinfo(found);
  const std::string where = target.host + ":" + port;

  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return make_error(Errc::kIo, std::string("socket: ") + std::strerror(errno));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0 &&
      errno != EINPROGRESS) {
    return make_error(Errc::kUnavailable,
                      "cannot connect to " + where + ": " + std::strerror(errno));
  }
  pollfd p{fd.get(), POLLOUT, 0};
  if (::poll(&p, 1, remaining_ms(deadline)) != 1) {
    return make_error(Errc::kTimeout, "no connection to " + where + " in time");
  }
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    return make_error(Errc::kUnavailable, "cannot connect to " + where + ": " + std::strerror(err));
  }

  // The MAC of the interface the request leaves from.
  protocol::TokenRequest request = request_in;
  sockaddr_in local{};
  socklen_t local_len = sizeof local;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &local_len) == 0) {
    const std::uint32_t ip = ntohl(local.sin_addr.s_addr);
    if (auto ifs = read_local_interfaces(); ifs.ok()) {
      for (const auto& i : *ifs) {
        if (i.mac && std::find(i.addresses.begin(), i.addresses.end(), ip) != i.addresses.end()) {
          request.mac = *i.mac;
        }
      }
    }
  }
  TETHER_ASSIGN_OR_RETURN(auto encoded, protocol::encode_token_request(request));
  const auto framed = protocol::frame_for_tcp(encoded);
  std::size_t sent = 0;
  while (sent < framed.size()) {
    pollfd w{fd.get(), POLLOUT, 0};
    if (::poll(&w, 1, remaining_ms(deadline)) != 1) {
      return make_error(Errc::kTimeout, "cannot send the token request to " + where + " in time");
    }
    const ssize_t n = ::send(fd.get(), framed.data() + sent, framed.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return make_error(Errc::kUnavailable, "sending to " + where + ": " + std::strerror(errno));
    }
    if (n > 0) sent += static_cast<std::size_t>(n);
  }
  std::vector<std::uint8_t> buffer;
  for (;;) {
    auto length = protocol::tcp_frame_length(buffer);
    if (!length.ok()) return length.error().context("token reply from " + where);
    if (*length) {
      auto decoded = protocol::decode_datagram(
          std::span<const std::uint8_t>(buffer).subspan(protocol::kTcpFrameHeader, **length));
      if (!decoded.ok()) return decoded.error().context("token reply from " + where);
      const auto* reply = std::get_if<protocol::TokenReply>(&*decoded);
      if (reply == nullptr)
        return make_error(Errc::kBadValue, where + " did not send a token reply");
      if (reply->nonce != request.nonce) {
        return make_error(Errc::kBadValue, where + " answered another request (nonce)");
      }
      if (reply->status != protocol::TokenStatus::kIssued) {
        return make_error(Errc::kPermissionDenied, where + ": " + token_status_text(reply->status));
      }
      return reply->token;
    }
    pollfd r{fd.get(), POLLIN, 0};
    if (::poll(&r, 1, remaining_ms(deadline)) != 1) {
      return make_error(Errc::kTimeout, "no token reply from " + where + " in time");
    }
    std::uint8_t chunk[1024];
    const ssize_t n = ::recv(fd.get(), chunk, sizeof chunk, 0);
    if (n == 0) return make_error(Errc::kUnavailable, where + " closed the connection");
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return make_error(Errc::kUnavailable, "reading from " + where + ": " + std::strerror(errno));
    }
    if (n > 0) buffer.insert(buffer.end(), chunk, chunk + n);
  }
}

struct DiscoveryRegistrar::DnsRequest {
  gaicb request{};
  addrinfo hints{};
  gaicb* list[1] = {&request};
  std::string name;
  ~DnsRequest() {
    if (::gai_cancel(&request) == EAI_NOTCANCELED) {
      // Still running in glibc's helper: wait for it rather than free memory it writes.
      const gaicb* wait_list[1] = {&request};
      ::gai_suspend(wait_list, 1, nullptr);
    }
    if (request.ar_result != nullptr) ::freeaddrinfo(request.ar_result);
  }
};

DiscoveryRegistrar::DiscoveryRegistrar(lws_context* ctx, StatePaths paths, RegistrarOptions options,
                                       std::function<void()> on_enrolled)
    : paths_(std::move(paths)),
      options_(std::move(options)),
      on_enrolled_(std::move(on_enrolled)),
      work_timer_(ctx, [this] { run_pending(); }),
      auto_timer_(ctx, [this] { auto_attempt(); }),
      dns_timer_(ctx, [this] { poll_dns(); }) {}

DiscoveryRegistrar::~DiscoveryRegistrar() = default;

bool DiscoveryRegistrar::enrolled() const {
  auto e = load_enrollment(paths_);
  return e.ok() && e->has_value();
}

protocol::RegisterStatus DiscoveryRegistrar::on_register_request(
    const protocol::RegisterRequest& request, std::uint32_t source) {
  const bool is_enrolled = enrolled();
  std::vector<std::string> trusted;
  if (is_enrolled) {
    if (auto t = load_trust(paths_); t.ok()) trusted = std::move(t).value();
  }
  const auto status =
      decide_register_request(request, is_enrolled, trusted, options_.accept_registration, busy());
  log::info("registration request from " + ipv4_to_string(source) + ": answered " +
            std::to_string(static_cast<int>(status)) +
            (status == protocol::RegisterStatus::kAccepted ? " (accepted)" : ""));
  if (status == protocol::RegisterStatus::kAccepted) {
    RegistrationTarget target;
    target.host = request.server_host.empty() ? ipv4_to_string(source) : request.server_host;
    target.port = request.registration_port;
    target.fingerprint = request.server_fingerprint;
    pending_ = target;
    // After the listener has sent the reply and returned to the loop.
    work_timer_.schedule(std::chrono::milliseconds(10));
  }
  return status;
}

void DiscoveryRegistrar::run_pending() {
  if (!pending_) return;
  const RegistrationTarget target = *pending_;
  enroll_from(target, "a registration request");
  pending_.reset();
}

void DiscoveryRegistrar::enroll_from(const RegistrationTarget& target, const char* how) {
  if (enrolled()) return;
  auto identity = DeviceIdentity::load_or_create(paths_);
  if (!identity.ok()) {
    log::error("registration: " + identity.error().message);
    return;
  }
  protocol::TokenRequest request;
  request.nonce = std::random_device{}() | (std::uint64_t{std::random_device{}()} << 32);
  auto id = hex_decode(identity->device_id());
  if (!id.ok() || id->size() != request.device_id.size()) return;
  std::copy(id->begin(), id->end(), request.device_id.begin());
  request.hostname = read_hostname().substr(0, 253);
  request.unit_id = read_unit_id().substr(0, 64);
  request.server_fingerprint = target.fingerprint;
  const std::string where = target.host + ":" + std::to_string(target.port);
  log::info(std::string("registration: asking ") + where + " for a token (" + how + ")");
  auto token = request_enrollment_token(target, request, options_.token_timeout);
  if (!token.ok()) {
    log::notice("registration: no token from " + where + ": " + token.error().message);
    return;
  }
  auto parsed = protocol::parse_enrollment_token(*token);
  if (!parsed.ok()) {
    log::warning("registration: " + where + " sent a malformed token: " + parsed.error().message);
    return;
  }
  // The request named the CA; a token for another one is refused before anything is sent.
  if (!all_zero(target.fingerprint) && parsed->ca_fingerprint != hex_encode(target.fingerprint)) {
    log::warning("registration: the token from " + where + " names CA " + parsed->ca_fingerprint +
                 ", not the requested " + hex_encode(target.fingerprint) + "; refused");
    return;
  }
  EnrollOptions options;
  options.token = *token;
  auto outcome = enroll(paths_, options);
  if (!outcome.ok()) {
    log::warning("registration: enrollment failed: " + outcome.error().message);
    return;
  }
  log::notice("registration: enrolled with " + outcome->server_url + " as device " +
              outcome->device_id);
  auto_timer_.cancel();
  dns_.reset();
  dns_timer_.cancel();
  if (on_enrolled_) on_enrolled_();
}

void DiscoveryRegistrar::update_auto_registration() {
  if (options_.auto_register == AutoRegister::kOff || enrolled()) {
    auto_timer_.cancel();
    dns_timer_.cancel();
    dns_.reset();
    return;
  }
  if (!auto_timer_.pending() && !dns_) {
    auto_delay_ = std::chrono::seconds(0);
    auto_timer_.schedule(options_.auto_first);
  }
}

void DiscoveryRegistrar::schedule_auto(bool failed) {
  // 30 s, 60 s, ... up to the cap, with up to 25 % jitter so a fleet spreads out.
  auto_delay_ = failed ? std::min(options_.auto_backoff_cap,
                                  std::max(std::chrono::seconds(30), auto_delay_ * 2))
                       : std::chrono::seconds(30);
  std::mt19937 rng(std::random_device{}());
  const auto jitter = std::uniform_int_distribution<std::int64_t>(0, auto_delay_.count() / 4)(rng);
  auto_timer_.schedule(auto_delay_ + std::chrono::seconds(jitter));
}

void DiscoveryRegistrar::auto_attempt() {
  if (enrolled() || options_.auto_register == AutoRegister::kOff) return;
  if (busy()) return schedule_auto(false);
  if (options_.auto_register == AutoRegister::kOn) {
    auto endpoint = parse_endpoint(options_.registration_server.find(':') == std::string::npos
                                       ? options_.registration_server + ":30001"
                                       : options_.registration_server);
    if (!endpoint.ok()) {
      log::warning("discovery.registration_server: " + endpoint.error().message);
      return;
    }
    enroll_from(RegistrationTarget{endpoint->host, endpoint->port, {}}, "auto-registration");
    if (!enrolled()) schedule_auto(true);
    return;
  }
  // kDns: resolve without blocking; poll for the answer.
  dns_ = std::make_unique<DnsRequest>();
  dns_->name = options_.dns_name;
  dns_->hints.ai_family = AF_INET;
  dns_->hints.ai_socktype = SOCK_STREAM;
  dns_->request.ar_name = dns_->name.c_str();
  dns_->request.ar_request = &dns_->hints;
  sigevent none{};
  none.sigev_notify = SIGEV_NONE;
  if (const int rc = ::getaddrinfo_a(GAI_NOWAIT, dns_->list, 1, &none); rc != 0) {
    log::debug(std::string("auto-registration: cannot resolve: ") + ::gai_strerror(rc));
    dns_.reset();
    return schedule_auto(true);
  }
  dns_started_ = Clock::now();
  dns_timer_.schedule(std::chrono::milliseconds(50));
}

void DiscoveryRegistrar::poll_dns() {
  if (!dns_) return;
  const int rc = ::gai_error(&dns_->request);
  if (rc == EAI_INPROGRESS) {
    if (Clock::now() - dns_started_ > std::chrono::seconds(30)) {
      dns_.reset();
      return schedule_auto(true);
    }
    dns_timer_.schedule(std::chrono::milliseconds(200));
    return;
  }
  if (rc != 0 || dns_->request.ar_result == nullptr) {
    log::debug("auto-registration: " + dns_->name + " does not resolve");
    dns_.reset();
    return schedule_auto(true);
  }
  sockaddr_in sin{};
  std::memcpy(&sin, dns_->request.ar_result->ai_addr, sizeof sin);
  const std::string host = ipv4_to_string(ntohl(sin.sin_addr.s_addr));
  log::info("auto-registration: " + dns_->name + " is " + host);
  dns_.reset();
  enroll_from(RegistrationTarget{host, kRegistrationPort, {}}, "auto-registration by DNS");
  if (!enrolled()) schedule_auto(true);
}

}  // namespace tether::agent
