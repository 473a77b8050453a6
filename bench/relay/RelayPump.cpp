// tether-bench-relay: the relay benchmark's data pump (bench/relay/run drives it).
//
// Both ends of a relayed byte stream in one process, on one poll loop, on plain OpenSSL, so
// that every relay (tether-server's shadowing tunnel, websockify, socat) is measured by the
// same code. An end is a WebSocket client (wss:// or ws://; the device end presents --cert,
// subprotocol tether.tunnel.v1; the viewer end subprotocol binary), a TCP client (tcp://) or
// a connection accepted on the pump's own listener ("listen": the TCP target that websockify
// and socat connect to).
//
//   tether-bench-relay --self-test
//   tether-bench-relay run [--ca-file FILE] [--cert FILE --key FILE] [--bytes SIZE] [--rtt N]
//                          [--closes N] [--close-bytes SIZE] [--timeout SECONDS]
//                          [--stall SECONDS]
//
// A phase ends with an error after --timeout (default 120 s), or as stalled when neither end
// has received a byte for --stall seconds (default 10).
// SIZE: bytes, or with a K, M or G suffix (KiB, MiB, GiB). run speaks JSON lines:
//   out {"listening": PORT}                      first: the listener for "listen" ends
//   out {"need": "stream"|"close", "index": I}   in {"device": END, "viewer": END}
//   out {"ready": "d2v"|"v2d"|"rtt"}             in  go       (the driver samples the relay)
//   out {"done": "d2v"|"v2d", "bytes": N, "seconds": S, "pump_cpu": S}
//   out {"done": "rtt", "samples_us": [...], "size": 64}
//   out {"close": I, "direction": "d2v"|"v2d", "sent": N, "received": M,
//        "seen": "close"|"eof"|"reset"|"timeout", "intact": BOOL, "seconds": S}
//   out {"end": true}                            or {"error": "..."} and exit status 1
// The stream pair carries --bytes device→viewer, then --bytes viewer→device, then --rtt
// 64-byte echoes (device → viewer → device). Then each of --closes pairs carries
// --close-bytes one way (device→viewer for even I, viewer→device for odd), after which the
// sender closes (WebSocket close 1000, or TCP shutdown); "received" is what the far end got
// before it saw the close. Every payload byte is checked against a fixed pattern.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/support/TlsClient.h"
#include "bench/support/WsFrame.h"

namespace tether::bench {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void emit(const json& line) {
  std::cout << line.dump() << '\n' << std::flush;
}

// ---- arguments ----------------------------------------------------------------------------

// "65536", "64K", "64M", "1G" → bytes.
std::optional<std::uint64_t> parse_size(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::uint64_t scale = 1;
  switch (text.back()) {
    case 'K': scale = 1ULL << 10; break;
    case 'M': scale = 1ULL << 20; break;
    case 'G': scale = 1ULL << 30; break;
    default: break;
  }
  if (scale != 1) text.remove_suffix(1);
  if (text.empty() || text.size() > 12) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v * scale;
}

struct Options {
  std::string ca_file, cert_file, key_file;
  std::uint64_t bytes = 0;
  std::uint64_t rtt = 0;
  std::uint64_t closes = 0;
  std::uint64_t close_bytes = 2ULL << 20;
  double timeout = 120;  // seconds per phase
  double stall = 10;     // seconds without a byte received that end a phase
};

// Empty when fine, else what is wrong.
std::string parse_options(const std::vector<std::string>& args, Options& out) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (i + 1 >= args.size()) return a + " needs a value (or is unknown)";
    const std::string& v = args[++i];
    std::optional<std::uint64_t> n;
    if (a == "--ca-file") {
      out.ca_file = v;
    } else if (a == "--cert") {
      out.cert_file = v;
    } else if (a == "--key") {
      out.key_file = v;
    } else if (a == "--bytes" || a == "--close-bytes" || a == "--rtt" || a == "--closes" ||
               a == "--timeout" || a == "--stall") {
      n = parse_size(v);
      if (!n) return "bad value for " + a + ": " + v;
      if (a == "--bytes") out.bytes = *n;
      if (a == "--close-bytes") out.close_bytes = *n;
      if (a == "--rtt") out.rtt = *n;
      if (a == "--closes") out.closes = *n;
      if (a == "--timeout" || a == "--stall") {
        if (*n == 0) return a + " must be positive";
        (a == "--timeout" ? out.timeout : out.stall) = static_cast<double>(*n);
      }
    } else {
      return "unknown argument " + a;
    }
  }
  if (out.cert_file.empty() != out.key_file.empty()) return "--cert and --key go together";
  return {};
}

// ---- endpoints ----------------------------------------------------------------------------

enum class EndKind { kListen, kTcp, kWebSocket };

struct Endpoint {
  EndKind kind = EndKind::kListen;
  bool tls = false;
  std::string host;
  std::uint16_t port = 0;
  std::string target = "/";  // path and query of a WebSocket URL
};

std::optional<Endpoint> parse_endpoint(std::string_view text, std::string& error) {
  Endpoint ep;
  if (text == "listen") return ep;
  std::string_view rest;
  auto strip = [&](std::string_view prefix) {
    if (text.substr(0, prefix.size()) != prefix) return false;
    rest = text.substr(prefix.size());
    return true;
  };
  if (strip("tcp://")) {
    ep.kind = EndKind::kTcp;
  } else if (strip("wss://")) {
    ep.kind = EndKind::kWebSocket;
    ep.tls = true;
    ep.port = 443;
  } else if (strip("ws://")) {
    ep.kind = EndKind::kWebSocket;
    ep.port = 80;
  } else {
    error = "an end is listen, tcp://HOST:PORT, ws://… or wss://…";
    return std::nullopt;
  }
  const std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    if (ep.kind == EndKind::kTcp) {
      error = "a tcp:// end has no path";
      return std::nullopt;
    }
    ep.target = std::string(rest.substr(slash));
  }
  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      error = "unclosed [";
      return std::nullopt;
    }
    ep.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        error = "junk after ]";
        return std::nullopt;
      }
      port_text = after.substr(1);
      has_port = true;
    }
  } else {
    const std::size_t colon = authority.find(':');
    ep.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      has_port = true;
    }
  }
  if (ep.host.empty()) {
    error = "no host";
    return std::nullopt;
  }
  if (ep.kind == EndKind::kTcp && !has_port) {
    error = "a tcp:// end needs a port";
    return std::nullopt;
  }
  if (has_port) {
    auto port = parse_size(port_text);
    if (!port || *port == 0 || *port > 65535 || port_text.back() > '9') {
      error = "bad port";
      return std::nullopt;
    }
    ep.port = static_cast<std::uint16_t>(*port);
  }
  return ep;
}

// WebSocket framing, the upgrade and the TLS client are bench/support's (WsFrame, TlsClient).
using ws::append_frame;
using ws::FrameParser;
using ws::kOpBinary;
using ws::kOpClose;
using ws::kOpPing;
using ws::kOpPong;

// ---- the payload pattern ------------------------------------------------------------------

// Payload byte i of a stream is pattern()[i % kPatternPeriod]: an odd period longer than any
// queue in the path, so a lost, repeated or reordered piece shows.
constexpr std::size_t kPatternPeriod = (1u << 20) + 13;
constexpr std::size_t kMaxChunk = 256 * 1024;  // the longest piece written or read at once

const std::uint8_t* pattern() {
  static const std::vector<std::uint8_t> bytes = [] {
    std::vector<std::uint8_t> v(kPatternPeriod + kMaxChunk);
    std::uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (std::size_t i = 0; i < kPatternPeriod; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      v[i] = static_cast<std::uint8_t>(x);
    }
    std::copy(v.begin(), v.begin() + kMaxChunk, v.begin() + kPatternPeriod);
    return v;
  }();
  return bytes.data();
}

bool matches_pattern(const std::uint8_t* p, std::size_t n, std::uint64_t stream_offset) {
  while (n > 0) {
    const std::size_t take = std::min(n, kMaxChunk);
    if (std::memcmp(p, pattern() + stream_offset % kPatternPeriod, take) != 0) return false;
    p += take;
    n -= take;
    stream_offset += take;
  }
  return true;
}

// ---- connections --------------------------------------------------------------------------

enum class Io { kOk, kWouldBlock, kEof, kError };

struct Conn {
  std::string name;  // "device" or "viewer"
  int fd = -1;
  SSL* ssl = nullptr;
  bool ws = false;
  std::uint8_t mask_seed = 1;

  std::vector<std::uint8_t> tx;
  std::size_t tx_off = 0;
  std::function<void(Conn&)> refill;  // called when tx has been written out
  bool shutdown_after_tx = false;     // TCP: shutdown(SHUT_WR) once tx is written
  bool close_after_tx = false;        // drop the connection once tx is written
  bool close_sent = false;            // WebSocket close frame queued

  std::vector<std::uint8_t> pending_rx;  // read past the upgrade response
  FrameParser parser;
  std::function<void(const std::uint8_t*, std::size_t)> on_data;
  std::uint64_t received = 0;  // payload bytes before any close
  bool close_seen = false;     // close frame received
  bool eof = false;
  std::string error;
  bool finished = false;  // closed by us (after a close, EOF or error)

  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() { drop(); }

  void drop() {
    if (ssl != nullptr) SSL_free(ssl);
    ssl = nullptr;
    if (fd >= 0) ::close(fd);
    fd = -1;
    finished = true;
  }
  bool writing() const { return tx_off < tx.size(); }

  Io read_some(std::uint8_t* buf, std::size_t cap, std::size_t& got) {
    got = 0;
    if (ssl != nullptr) return tls_result(tls_read(ssl, buf, cap, got));
    const ssize_t n = ::recv(fd, buf, cap, 0);
    if (n > 0) {
      got = static_cast<std::size_t>(n);
      return Io::kOk;
    }
    if (n == 0) return Io::kEof;
    return errno_failure();
  }

  Io write_some(const std::uint8_t* buf, std::size_t n, std::size_t& put) {
    put = 0;
    if (ssl != nullptr) return tls_result(tls_write(ssl, buf, n, put));
    const ssize_t w = ::send(fd, buf, n, MSG_NOSIGNAL);
    if (w >= 0) {
      put = static_cast<std::size_t>(w);
      return Io::kOk;
    }
    return errno_failure();
  }

  Io tls_result(TlsIo r) {
    switch (r) {
      case TlsIo::kOk: return Io::kOk;
      case TlsIo::kWantRead:
      case TlsIo::kWantWrite: return Io::kWouldBlock;
      case TlsIo::kClosed: return Io::kEof;
      case TlsIo::kSysError: return errno_failure();
      case TlsIo::kTlsError: break;
    }
    error = tls_error_text();
    return Io::kError;
  }

  Io errno_failure() {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Io::kWouldBlock;
    error = errno == ECONNRESET ? "reset" : std::strerror(errno);
    return Io::kError;
  }

  void next_mask(std::uint8_t key[4]) {
    // Client frames must be masked; the key only has to vary (the relay's work is the same).
    for (int i = 0; i < 4; ++i) {
      mask_seed = static_cast<std::uint8_t>(mask_seed * 167 + 13);
      key[i] = mask_seed;
    }
  }

  // Queues payload bytes (one binary frame on a WebSocket).
  void queue_data(const std::uint8_t* p, std::size_t n) {
    if (ws) {
      std::uint8_t key[4];
      next_mask(key);
      append_frame(tx, kOpBinary, p, n, key);
    } else {
      tx.insert(tx.end(), p, p + n);
    }
  }

  void queue_control(std::uint8_t opcode, std::string_view payload) {
    std::uint8_t key[4];
    next_mask(key);
    append_frame(tx, opcode, reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size(),
                 key);
  }

  // The sender's close: a close frame (1000), or a TCP shutdown once all is written.
  void queue_close() {
    if (ws) {
      if (!close_sent) queue_control(kOpClose, std::string_view("\x03\xe8", 2));
      close_sent = true;
    } else {
      shutdown_after_tx = true;
    }
  }
};

// Writes what is queued (refilling as it goes) until the socket would block; false when the
// connection failed or was dropped.
bool handle_writable(Conn& c, std::size_t budget = 8u << 20) {
  if (c.finished) return false;
  std::size_t written = 0;
  for (;;) {
    if (!c.writing()) {
      c.tx.clear();
      c.tx_off = 0;
      if (c.refill) c.refill(c);
      if (!c.writing()) {
        if (c.shutdown_after_tx && !c.ws && c.fd >= 0) {
          ::shutdown(c.fd, SHUT_WR);
          c.shutdown_after_tx = false;
        }
        if (c.close_after_tx) c.drop();
        return !c.finished;
      }
    }
    if (written >= budget) return true;
    std::size_t put = 0;
    const std::size_t n = std::min(c.tx.size() - c.tx_off, std::size_t{1} << 20);
    const Io r = c.write_some(c.tx.data() + c.tx_off, n, put);
    if (r == Io::kWouldBlock) return true;
    if (r != Io::kOk) {
      if (c.error.empty()) c.error = "write failed";
      c.drop();
      return false;
    }
    c.tx_off += put;
    written += put;
  }
}

void deliver(Conn& c, std::uint8_t* p, std::size_t n) {
  if (!c.ws) {
    if (c.on_data) c.on_data(p, n);
    c.received += n;
    return;
  }
  std::string e = c.parser.feed(
      p, n,
      [&c](const std::uint8_t* d, std::size_t len) {
        if (c.close_seen) return;
        if (c.on_data) c.on_data(d, len);
        c.received += len;
      },
      [&c](std::uint8_t opcode, std::string_view payload) {
        if (opcode == kOpPing) {
          c.queue_control(kOpPong, payload);
        } else if (opcode == kOpClose && !c.close_seen) {
          c.close_seen = true;
          if (c.close_sent) {
            c.close_after_tx = true;  // our close answered: done
          } else {
            c.queue_control(kOpClose, payload.substr(0, 2));  // answer with its code
            c.close_sent = true;
            c.close_after_tx = true;
          }
        }
      });
  if (!e.empty() && c.error.empty()) c.error = "protocol error: " + e;
}

// Reads what is there (up to `budget`). Returns true when more may be waiting.
bool handle_readable(Conn& c, std::size_t budget = 1u << 20) {
  static std::vector<std::uint8_t> buf(kMaxChunk);
  if (!c.pending_rx.empty()) {
    std::vector<std::uint8_t> pending;
    pending.swap(c.pending_rx);
    deliver(c, pending.data(), pending.size());
  }
  std::size_t total = 0;
  while (!c.finished && c.error.empty()) {
    if (total >= budget) return true;
    std::size_t got = 0;
    const Io r = c.read_some(buf.data(), buf.size(), got);
    if (r == Io::kWouldBlock) break;
    if (r == Io::kEof) {
      c.eof = true;
      c.drop();
      break;
    }
    if (r == Io::kError) {
      c.drop();
      break;
    }
    total += got;
    deliver(c, buf.data(), got);
    if (c.close_after_tx) break;
  }
  if (!c.error.empty() && !c.finished) c.drop();
  if (c.close_after_tx && !c.finished) handle_writable(c);
  return false;
}

// No byte received on either connection for this long ends a phase as stalled, well before
// its timeout: a relay that has stopped forwarding (websockify sometimes does) should cost the
// run seconds, not the whole phase's timeout.
double g_stall_s = 10;
// Why the last run_loop() returned false: "timed out" or "stalled".
std::string g_loop_end;

// Runs both connections until `done`; false on `timeout_s` or a stall (g_loop_end says which).
bool run_loop(const std::vector<Conn*>& conns, const std::function<bool()>& done,
              double timeout_s) {
  const auto to_duration = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  const auto deadline = Clock::now() + to_duration(timeout_s);
  const auto received = [&] {
    std::uint64_t sum = 0;
    for (const Conn* c : conns) sum += c->received;
    return sum;
  };
  std::uint64_t last_received = received();
  auto last_progress = Clock::now();
  bool more = false;
  while (!done()) {
    const auto now = Clock::now();
    if (now >= deadline) {
      g_loop_end = "timed out";
      return false;
    }
    if (const auto r = received(); r != last_received) {
      last_received = r;
      last_progress = now;
    } else if (now - last_progress >= to_duration(g_stall_s)) {
      g_loop_end =
          "stalled (nothing received for " + std::to_string(static_cast<int>(g_stall_s)) + " s)";
      return false;
    }
    pollfd fds[2]{};
    Conn* which[2]{};
    nfds_t n = 0;
    for (Conn* c : conns) {
      if (c->finished) continue;
      if (c->writing()) handle_writable(*c);
      if (c->finished) continue;
      if (!c->pending_rx.empty()) more = true;
      fds[n].fd = c->fd;
      fds[n].events = static_cast<short>(POLLIN | (c->writing() ? POLLOUT : 0));
      which[n++] = c;
    }
    if (done()) break;
    if (n == 0) return done();
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    const int wait_ms = more ? 0 : static_cast<int>(std::clamp<long long>(left, 1, 100));
    more = false;
    if (::poll(fds, n, wait_ms) < 0 && errno != EINTR) {
      g_loop_end = std::string("poll: ") + std::strerror(errno);
      return false;
    }
    for (nfds_t i = 0; i < n; ++i) {
      Conn& c = *which[i];
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR) || !c.pending_rx.empty()) {
        more |= handle_readable(c);
      }
      if (!c.finished && (fds[i].revents & POLLOUT)) handle_writable(c);
    }
  }
  return true;
}

// ---- opening ends -------------------------------------------------------------------------

struct Tls {
  ssl::SslCtxPtr device;
  ssl::SslCtxPtr viewer;
};

ssl::SslCtxPtr make_ssl_ctx(const Options& o, bool with_cert, std::string& error) {
  TlsClientConfig config;
  config.ca_file = o.ca_file;
  if (with_cert) {
    config.cert_file = o.cert_file;
    config.key_file = o.key_file;
  }
  // Several records per read: fewer system calls in the pump.
  config.read_ahead = true;
  config.read_buffer_len = 64 * 1024;
  config.ignore_unexpected_eof = true;
  return make_tls_client_ctx(config, error);
}

bool wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

void tune_socket(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

int connect_tcp(const std::string& host, std::uint16_t port, Clock::time_point deadline,
                std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port_text = std::to_string(port);
  if (const int rc = getaddrinfo(host.c_str(), port_text.c_str(), &hints, &res); rc != 0) {
    error = host + ": " + gai_strerror(rc);
    return -1;
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, &freeaddrinfo);
  const int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::strerror(errno);
    return -1;
  }
  tune_socket(fd);
  if (::connect(fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS) {
    error = "connect to " + host + ":" + port_text + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  int so_error = 0;
  socklen_t len = sizeof so_error;
  if (!wait_fd(fd, POLLOUT, deadline) ||
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0 || so_error != 0) {
    error = "connect to " + host + ":" + port_text + ": " +
            (so_error != 0 ? std::strerror(so_error) : "timed out");
    ::close(fd);
    return -1;
  }
  return fd;
}

bool tls_handshake(Conn& c, SSL_CTX* ctx, const std::string& host, Clock::time_point deadline,
                   std::string& error) {
  c.ssl = SSL_new(ctx);
  SSL_set_fd(c.ssl, c.fd);
  tls_expect_host(c.ssl, host);
  for (;;) {
    const TlsIo r = tls_connect(c.ssl);
    if (r == TlsIo::kOk) return true;
    short events = 0;
    if (r == TlsIo::kWantRead) events = POLLIN;
    if (r == TlsIo::kWantWrite) events = POLLOUT;
    if (events == 0) {
      const long verify = SSL_get_verify_result(c.ssl);
      error = "TLS handshake with " + host + ": " + tls_error_text() +
              (verify != X509_V_OK ? std::string(" (") + X509_verify_cert_error_string(verify) + ")"
                                   : "");
      return false;
    }
    if (!wait_fd(c.fd, events, deadline)) {
      error = "TLS handshake with " + host + " timed out";
      return false;
    }
  }
}

bool ws_upgrade(Conn& c, const Endpoint& ep, const std::string& subprotocol,
                Clock::time_point deadline, std::string& error) {
  const std::string key = ws::new_upgrade_key();
  const std::string request =
      ws::upgrade_request(ep.target, ws::host_header(ep.host, ep.port), key, subprotocol);
  c.tx.assign(request.begin(), request.end());
  c.tx_off = 0;
  while (c.writing()) {
    if (!handle_writable(c)) {
      error = "sending the upgrade: " + c.error;
      return false;
    }
    if (c.writing() && !wait_fd(c.fd, POLLOUT, deadline)) {
      error = "sending the upgrade timed out";
      return false;
    }
  }
  std::string response;
  std::uint8_t buf[4096];
  std::size_t end = std::string::npos;
  while (end == std::string::npos) {
    std::size_t got = 0;
    const Io r = c.read_some(buf, sizeof buf, got);
    if (r == Io::kWouldBlock) {
      if (!wait_fd(c.fd, POLLIN, deadline)) {
        error = "no answer to the upgrade";
        return false;
      }
      continue;
    }
    if (r != Io::kOk) {
      error =
          "the upgrade failed: " + (c.error.empty() ? std::string("connection closed") : c.error);
      return false;
    }
    response.append(reinterpret_cast<const char*>(buf), got);
    end = response.find("\r\n\r\n");
    if (response.size() > 16384) {
      error = "an overlong upgrade answer";
      return false;
    }
  }
  c.pending_rx.assign(response.begin() + static_cast<std::ptrdiff_t>(end + 4), response.end());
  error = ws::check_upgrade_answer(std::string_view(response).substr(0, end), key);
  if (!error.empty()) return false;
  c.ws = true;
  return true;
}

class Pump {
 public:
  Pump(const Options& o, Tls& tls, int listener) : o_(o), tls_(tls), listener_(listener) {}

  // Opens both ends of a pair; empty on success, else why not.
  std::string open_pair(const json& pair, std::unique_ptr<Conn>& device,
                        std::unique_ptr<Conn>& viewer) {
    if (!pair.is_object() || !pair.contains("device") || !pair.contains("viewer") ||
        !pair["device"].is_string() || !pair["viewer"].is_string()) {
      return "a pair needs device and viewer ends";
    }
    std::string error;
    auto dev_ep = parse_endpoint(pair["device"].get<std::string>(), error);
    if (!dev_ep) return "device end: " + error;
    auto view_ep = parse_endpoint(pair["viewer"].get<std::string>(), error);
    if (!view_ep) return "viewer end: " + error;
    if (dev_ep->kind == EndKind::kListen && view_ep->kind == EndKind::kListen) {
      return "at most one end can be the listener";
    }
    const auto deadline = Clock::now() + std::chrono::seconds(15);
    device = std::make_unique<Conn>();
    device->name = "device";
    device->mask_seed = 7;
    viewer = std::make_unique<Conn>();
    viewer->name = "viewer";
    viewer->mask_seed = 91;
    if (dev_ep->kind != EndKind::kListen) {
      if (!connect_end(*device, *dev_ep, tls_.device.get(), "tether.tunnel.v1", deadline, error)) {
        return "device end: " + error;
      }
    }
    if (view_ep->kind != EndKind::kListen) {
      if (!connect_end(*viewer, *view_ep, tls_.viewer.get(), "binary", deadline, error)) {
        return "viewer end: " + error;
      }
    }
    Conn& accepted = dev_ep->kind == EndKind::kListen ? *device : *viewer;
    if (dev_ep->kind == EndKind::kListen || view_ep->kind == EndKind::kListen) {
      if (!wait_fd(listener_, POLLIN, deadline)) {
        return accepted.name + " end: nobody connected to the listener";
      }
      accepted.fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (accepted.fd < 0) return accepted.name + " end: accept: " + std::strerror(errno);
      tune_socket(accepted.fd);
    }
    return {};
  }

  bool connect_end(Conn& c, const Endpoint& ep, SSL_CTX* ctx, const std::string& subprotocol,
                   Clock::time_point deadline, std::string& error) {
    c.fd = connect_tcp(ep.host, ep.port, deadline, error);
    if (c.fd < 0) return false;
    if (ep.tls && !tls_handshake(c, ctx, ep.host, deadline, error)) return false;
    if (ep.kind == EndKind::kWebSocket && !ws_upgrade(c, ep, subprotocol, deadline, error)) {
      return false;
    }
    return true;
  }

  static bool alive(const Conn& c) { return !c.finished && c.error.empty(); }

  static std::string failure(const Conn& c) {
    if (!c.error.empty()) return c.name + " end: " + c.error;
    if (c.close_seen) return c.name + " end: closed by the relay";
    if (c.eof) return c.name + " end: EOF from the relay";
    return c.name + " end: gone";
  }

  // One direction of the stream pair; empty on success.
  std::string transfer(Conn& from, Conn& to, std::uint64_t bytes, json& result) {
    std::uint64_t generated = 0;
    const std::uint64_t start = to.received;
    bool intact = true;
    from.refill = [&](Conn& c) {
      while (generated < bytes && c.tx.size() < (1u << 20)) {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(64 * 1024, bytes - generated));
        c.queue_data(pattern() + generated % kPatternPeriod, n);
        generated += n;
      }
    };
    to.on_data = [&](const std::uint8_t* p, std::size_t n) {
      if (intact && !matches_pattern(p, n, to.received - start)) intact = false;
    };
    const auto t0 = Clock::now();
    const double cpu0 = cpu_seconds();
    handle_writable(from);
    const bool ok = run_loop(
        {&from, &to}, [&] { return to.received - start >= bytes || !alive(from) || !alive(to); },
        o_.timeout);
    const double seconds = seconds_between(t0, Clock::now());
    from.refill = nullptr;
    to.on_data = nullptr;
    if (!ok) return g_loop_end + " after " + std::to_string(to.received - start) + " bytes";
    if (to.received - start < bytes) return alive(to) ? failure(from) : failure(to);
    if (!intact) return "the bytes arrived changed";
    result["bytes"] = to.received - start;
    result["seconds"] = seconds;
    result["pump_cpu"] = cpu_seconds() - cpu0;
    return {};
  }

  std::string echo(Conn& device, Conn& viewer, std::uint64_t count, json& result) {
    constexpr std::size_t kSize = 64;
    std::vector<double> samples;
    samples.reserve(count);
    for (std::uint64_t i = 0; i < count; ++i) {
      const auto t0 = Clock::now();
      for (const auto& leg : {std::pair{&device, &viewer}, std::pair{&viewer, &device}}) {
        // Not a structured binding: clang 14 cannot capture one in the lambda below.
        Conn* const from = leg.first;
        Conn* const to = leg.second;
        const std::uint64_t want = to->received + kSize;
        from->queue_data(pattern() + (i * kSize) % kPatternPeriod, kSize);
        handle_writable(*from);
        if (!run_loop(
                {&device, &viewer},
                [&] { return to->received >= want || !alive(device) || !alive(viewer); },
                o_.timeout)) {
          return "an echo " + g_loop_end;
        }
        if (!alive(device)) return failure(device);
        if (!alive(viewer)) return failure(viewer);
      }
      samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    result["samples_us"] = samples;
    result["size"] = kSize;
    return {};
  }

  // The sender writes `bytes`, then closes; what did the far end get before the close?
  json close_one(Conn& from, Conn& to, std::uint64_t bytes) {
    std::uint64_t generated = 0;
    bool intact = true;
    bool closing = false;
    from.refill = [&](Conn& c) {
      if (closing) return;
      while (generated < bytes && c.tx.size() < (1u << 20)) {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(64 * 1024, bytes - generated));
        c.queue_data(pattern() + generated % kPatternPeriod, n);
        generated += n;
      }
      if (generated >= bytes) {
        c.queue_close();
        closing = true;
      }
    };
    to.on_data = [&](const std::uint8_t* p, std::size_t n) {
      if (intact && !matches_pattern(p, n, to.received)) intact = false;
    };
    const auto t0 = Clock::now();
    handle_writable(from);
    // Done when the far end saw the close (and answered it) and the sender's close was
    // answered in turn.
    const bool ok = run_loop(
        {&from, &to}, [&] { return from.finished && to.finished; }, std::min(o_.timeout, 30.0));
    json out;
    out["sent"] = generated;
    out["received"] = to.received;
    out["intact"] = intact;
    out["seconds"] = seconds_between(t0, Clock::now());
    std::string seen = "timeout";
    if (to.close_seen) {
      seen = "close";
    } else if (to.eof) {
      seen = "eof";
    } else if (!to.error.empty()) {
      seen = to.error == "reset" ? "reset" : "error: " + to.error;
    }
    out["seen"] = ok || to.finished ? seen : "timeout";
    if (!from.error.empty()) out["sender_error"] = from.error;
    from.refill = nullptr;
    to.on_data = nullptr;
    return out;
  }

  // Closes the stream pair from the device side, waiting a little for it to finish.
  void finish_pair(Conn& device, Conn& viewer) {
    if (device.finished) return;
    device.queue_close();
    handle_writable(device);
    (void)run_loop(
        {&device, &viewer}, [&] { return device.finished && viewer.finished; }, 5);
  }

 private:
  const Options& o_;
  Tls& tls_;
  int listener_;
};

bool read_line(std::string& line) {
  return static_cast<bool>(std::getline(std::cin, line));
}

int fail(const std::string& why) {
  emit({{"error", why}});
  return 1;
}

bool wait_go(const std::string& phase) {
  emit({{"ready", phase}});
  std::string line;
  return read_line(line) && line == "go";
}

bool next_pair(const char* what, std::uint64_t index, json& pair) {
  emit({{"need", what}, {"index", index}});
  std::string line;
  if (!read_line(line)) return false;
  pair = json::parse(line, nullptr, false);
  return !pair.is_discarded();
}

int run(const Options& o) {
  Tls tls;
  std::string error;
  tls.device = make_ssl_ctx(o, true, error);
  if (!tls.device) return fail(error);
  tls.viewer = make_ssl_ctx(o, false, error);
  if (!tls.viewer) return fail(error);

  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 16) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return fail(std::string("cannot listen: ") + std::strerror(errno));
  }
  emit({{"listening", ntohs(addr.sin_port)}});
  Pump pump(o, tls, listener);

  if (o.bytes > 0 || o.rtt > 0) {
    json pair;
    if (!next_pair("stream", 0, pair)) return fail("no pair on stdin");
    std::unique_ptr<Conn> device, viewer;
    if (std::string e = pump.open_pair(pair, device, viewer); !e.empty()) return fail(e);
    if (o.bytes > 0) {
      for (const char* phase : {"d2v", "v2d"}) {
        if (!wait_go(phase)) return fail("no go on stdin");
        json result{{"done", phase}};
        const bool d2v = std::string_view(phase) == "d2v";
        std::string e = d2v ? pump.transfer(*device, *viewer, o.bytes, result)
                            : pump.transfer(*viewer, *device, o.bytes, result);
        if (!e.empty()) return fail(std::string(phase) + ": " + e);
        emit(result);
      }
    }
    if (o.rtt > 0) {
      if (!wait_go("rtt")) return fail("no go on stdin");
      json result{{"done", "rtt"}};
      if (std::string e = pump.echo(*device, *viewer, o.rtt, result); !e.empty()) {
        return fail("rtt: " + e);
      }
      emit(result);
    }
    pump.finish_pair(*device, *viewer);
  }

  for (std::uint64_t i = 0; i < o.closes; ++i) {
    json pair;
    if (!next_pair("close", i, pair)) return fail("no pair on stdin");
    std::unique_ptr<Conn> device, viewer;
    if (std::string e = pump.open_pair(pair, device, viewer); !e.empty()) {
      return fail("close " + std::to_string(i) + ": " + e);
    }
    const bool d2v = i % 2 == 0;
    json result = d2v ? pump.close_one(*device, *viewer, o.close_bytes)
                      : pump.close_one(*viewer, *device, o.close_bytes);
    result["close"] = i;
    result["direction"] = d2v ? "d2v" : "v2d";
    emit(result);
  }
  ::close(listener);
  emit({{"end", true}});
  return 0;
}

// ---- self-test ----------------------------------------------------------------------------

int self_test() {
  int failures = 0;
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) {
      std::cerr << "FAILED: " << what << '\n';
      ++failures;
    }
  };
  // Sizes and arguments.
  check(parse_size("65536") == 65536u, "size 65536");
  check(parse_size("64M") == 64u << 20, "size 64M");
  check(parse_size("1G") == 1ULL << 30, "size 1G");
  check(!parse_size("") && !parse_size("M") && !parse_size("1.5M") && !parse_size("-1") &&
            !parse_size("12T"),
        "bad sizes refused");
  Options o;
  check(parse_options({"--bytes", "1G", "--rtt", "2000", "--closes", "100"}, o).empty() &&
            o.bytes == 1ULL << 30 && o.rtt == 2000 && o.closes == 100,
        "options parsed");
  check(!parse_options({"--bytes"}, o).empty(), "missing value refused");
  check(!parse_options({"--cert", "a.crt"}, o).empty(), "cert without key refused");
  check(!parse_options({"--frobnicate", "1"}, o).empty(), "unknown option refused");
  check(!parse_options({"--timeout", "0"}, o).empty(), "zero timeout refused");
  check(!parse_options({"--stall", "0"}, o).empty(), "zero stall refused");
  Options stalled;
  check(parse_options({"--stall", "3"}, stalled).empty() && stalled.stall == 3, "stall parsed");

  // Endpoints.
  std::string error;
  auto ep = parse_endpoint("wss://127.0.0.1:8443/tunnel/viewer/abc?token=x", error);
  check(ep && ep->kind == EndKind::kWebSocket && ep->tls && ep->host == "127.0.0.1" &&
            ep->port == 8443 && ep->target == "/tunnel/viewer/abc?token=x",
        "wss endpoint");
  ep = parse_endpoint("ws://[::1]/", error);
  check(ep && !ep->tls && ep->host == "::1" && ep->port == 80 && ep->target == "/", "ws v6");
  ep = parse_endpoint("tcp://127.0.0.1:5900", error);
  check(ep && ep->kind == EndKind::kTcp && ep->port == 5900, "tcp endpoint");
  ep = parse_endpoint("listen", error);
  check(ep && ep->kind == EndKind::kListen, "listen endpoint");
  for (const char* bad : {"tcp://127.0.0.1", "tcp://h:1/x", "http://h:1/", "wss://:1/",
                          "wss://h:0/", "wss://h:70000/", "wss://h:8M/", "wss://[::1/", ""}) {
    check(!parse_endpoint(bad, error), std::string("endpoint refused: ") + bad);
  }

  // The framing itself is unit-tested with bench/support (WsFrameTest.cpp); here, that the
  // pump's own frames (masked, pattern payloads) parse back whole and split anyhow.
  for (std::size_t size : {0u, 1u, 125u, 126u, 65536u, 70001u}) {
    Conn c;
    c.ws = true;
    c.queue_data(pattern() + size, size);
    c.queue_close();
    for (std::size_t step : {c.tx.size(), std::size_t{1}, std::size_t{7}, std::size_t{4096}}) {
      std::vector<std::uint8_t> copy = c.tx;
      FrameParser parser;
      std::vector<std::uint8_t> got;
      int closes = 0;
      std::string e;
      for (std::size_t at = 0; at < copy.size() && e.empty(); at += step) {
        e = parser.feed(
            copy.data() + at, std::min(step, copy.size() - at),
            [&](const std::uint8_t* p, std::size_t n) { got.insert(got.end(), p, p + n); },
            [&](std::uint8_t op, std::string_view pl) {
              closes += op == kOpClose && pl == "\x03\xe8";
            });
      }
      check(e.empty() && closes == 1 && got.size() == size &&
                std::equal(got.begin(), got.end(), pattern() + size),
            "pump frames of " + std::to_string(size) + " in steps of " + std::to_string(step));
    }
  }
  // The pattern notices a changed, lost or repeated byte.
  {
    std::vector<std::uint8_t> data(pattern() + 1000, pattern() + 1000 + 300000);
    check(matches_pattern(data.data(), data.size(), 1000), "pattern matches");
    check(matches_pattern(pattern() + kPatternPeriod - 5, 10, kPatternPeriod - 5), "pattern wraps");
    check(!matches_pattern(data.data() + 1, 4096, 1000), "a lost byte shows");
    data[299999] ^= 1;
    check(!matches_pattern(data.data(), data.size(), 1000), "a changed byte shows");
  }
  // A connection's queued frames are masked client frames.
  {
    Conn c;
    c.ws = true;
    c.queue_data(pattern(), 5);
    c.queue_close();
    c.queue_close();  // once only
    check(c.tx.size() == (2 + 4 + 5) + (2 + 4 + 2) && (c.tx[1] & 0x80) && c.close_sent,
          "queued client frames");
    Conn t;
    t.queue_data(pattern(), 5);
    t.queue_close();
    check(t.tx.size() == 5 && t.shutdown_after_tx, "TCP close is a shutdown");
  }
  if (failures == 0) std::cout << "self-test ok\n";
  return failures == 0 ? 0 : 1;
}

int usage(const std::string& why) {
  std::cerr << "tether-bench-relay: " << why << "\n"
            << "usage: tether-bench-relay --self-test\n"
               "       tether-bench-relay run [--ca-file FILE] [--cert FILE --key FILE]\n"
               "           [--bytes SIZE] [--rtt N] [--closes N] [--close-bytes SIZE]\n"
               "           [--timeout SECONDS]\n";
  return 2;
}

}  // namespace
}  // namespace tether::bench

int main(int argc, char** argv) {
  using namespace tether::bench;
  signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 1 && args[0] == "--self-test") return self_test();
  if (args.empty() || args[0] != "run") return usage("need run or --self-test");
  Options o;
  if (std::string e = parse_options({args.begin() + 1, args.end()}, o); !e.empty()) return usage(e);
  g_stall_s = o.stall;
  return run(o);
}
