// tether-bench-rfb: the RFB client of the first-frame and session benches. It connects to a
// VNC server (TCP, or an inherited socket), offers one encoding as a viewer would, asks for
// the whole screen and then for incremental updates as soon as each one is in, and prints
// JSON lines:
//
//   {"event":"init","ms":..,"width":..,"height":..,"name":".."}
//   {"event":"first_frame","ms":..,"ms_since_connect":..,"bytes":..,"updates":..,"rects":..}
//   {"event":"summary","seconds":..,"bytes":..,"updates":..,"rects":..,"bytes_per_s":..,
//    "updates_per_s":..,"end":"duration"|"closed","encodings":{"7":..}}
//   {"event":"error","message":".."}
//
// "ms" counts from --start-ns (a CLOCK_MONOTONIC instant, the one Python's time.monotonic_ns
// reads) or from the program's start. The summary covers the --duration seconds after the
// first full frame. Pixels are never decoded (RfbStreamParser.h).
//
//   tether-bench-rfb (--connect HOST:PORT | --fd N) [--encoding tight|zrle|raw] [--quality Q]
//                    [--compress C] [--duration S] [--start-ns NS] [--timeout S] [--hold]
//   tether-bench-rfb --self-test
//
// --hold keeps the connection open after the last line until stdin ends, so that the caller
// can read the server process's figures while the session still exists.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "RfbStreamParser.h"

namespace tether::bench {
namespace {

std::int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

double ms_between(std::int64_t from, std::int64_t to) {
  return static_cast<double>(to - from) / 1e6;
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", u);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

void emit(const std::string& line) {
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

int error_out(const std::string& message) {
  emit("{\"event\":\"error\",\"message\":" + json_string(message) + "}");
  return 1;
}

struct Options {
  std::string host;
  int port = -1;
  int fd = -1;
  std::string encoding = "tight";
  int quality = 8;
  int compress = 2;
  double duration = 0;
  std::int64_t start_ns = 0;
  double timeout = 60;
  bool hold = false;
  bool self_test = false;
};

const char* const kUsage =
    "usage: tether-bench-rfb (--connect HOST:PORT | --fd N) [--encoding tight|zrle|raw]\n"
    "                        [--quality 0-9] [--compress 0-9] [--duration S] [--start-ns NS]\n"
    "                        [--timeout S] [--hold]\n"
    "       tether-bench-rfb --self-test\n";

bool parse_options(int argc, char** argv, Options& o, std::string& error) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--self-test" || arg == "--hold") {
      (arg == "--hold" ? o.hold : o.self_test) = true;
      continue;
    }
    if (i + 1 >= argc) {
      error = "unknown option or missing value: " + arg;
      return false;
    }
    const std::string value = argv[++i];
    char* end = nullptr;
    if (arg == "--connect") {
      const auto colon = value.rfind(':');
      if (colon == std::string::npos) {
        error = "--connect wants HOST:PORT";
        return false;
      }
      o.host = value.substr(0, colon);
      o.port = static_cast<int>(std::strtol(value.c_str() + colon + 1, &end, 10));
    } else if (arg == "--fd") {
      o.fd = static_cast<int>(std::strtol(value.c_str(), &end, 10));
    } else if (arg == "--encoding") {
      o.encoding = value;
      end = const_cast<char*>("");
    } else if (arg == "--quality") {
      o.quality = static_cast<int>(std::strtol(value.c_str(), &end, 10));
    } else if (arg == "--compress") {
      o.compress = static_cast<int>(std::strtol(value.c_str(), &end, 10));
    } else if (arg == "--duration") {
      o.duration = std::strtod(value.c_str(), &end);
    } else if (arg == "--start-ns") {
      o.start_ns = std::strtoll(value.c_str(), &end, 10);
    } else if (arg == "--timeout") {
      o.timeout = std::strtod(value.c_str(), &end);
    } else {
      error = "unknown option " + arg;
      return false;
    }
    if (end == nullptr || *end != '\0') {
      error = "bad value for " + arg + ": " + value;
      return false;
    }
  }
  if (o.self_test) return true;
  if ((o.port < 0) == (o.fd < 0)) {
    error = "give one of --connect or --fd";
    return false;
  }
  if (o.quality < 0 || o.quality > 9 || o.compress < 0 || o.compress > 9) {
    error = "--quality and --compress go from 0 to 9";
    return false;
  }
  if (offered_encodings(o.encoding, o.quality, o.compress).empty()) {
    error = "unknown encoding " + o.encoding;
    return false;
  }
  return true;
}

// Connects, retrying while nobody listens yet (the listener may still be starting).
int connect_tcp(const Options& o, std::int64_t deadline_ns, std::string& error) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(o.port));
  if (inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr) != 1) {
    error = "--connect wants an IPv4 address, not " + o.host;
    return -1;
  }
  for (;;) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      error = std::string("socket: ") + std::strerror(errno);
      return -1;
    }
    if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      const int one = 1;
      (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    const int err = errno;
    close(fd);
    if (err != ECONNREFUSED || now_ns() > deadline_ns) {
      error = "connect " + o.host + ":" + std::to_string(o.port) + ": " + std::strerror(err);
      return -1;
    }
    usleep(2000);
  }
}

int run(const Options& o) {
  const std::int64_t started = o.start_ns != 0 ? o.start_ns : now_ns();
  const std::int64_t give_up = now_ns() + static_cast<std::int64_t>(o.timeout * 1e9);
  std::string error;
  const int fd = o.fd >= 0 ? o.fd : connect_tcp(o, give_up, error);
  if (fd < 0) return error_out(error);
  const std::int64_t connected = now_ns();

  // Reads wait until `deadline`: the give-up time until the first frame, then the end of
  // the measured window.
  std::int64_t deadline = give_up;
  bool timed_out = false;
  ByteReader in([&](std::uint8_t* out, std::size_t capacity) -> std::size_t {
    for (;;) {
      const std::int64_t left = deadline - now_ns();
      if (left <= 0) {
        timed_out = true;
        return 0;
      }
      pollfd p{fd, POLLIN, 0};
      const int n = poll(&p, 1, static_cast<int>(left / 1000000 + 1));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) continue;  // the deadline check above ends it
      const ssize_t got = recv(fd, out, capacity, 0);
      if (got < 0 && errno == EINTR) continue;
      return got > 0 ? static_cast<std::size_t>(got) : 0;
    }
  });
  const WriteAll write = [fd](const void* data, std::size_t n) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    while (n > 0) {
      const ssize_t sent = send(fd, p, n, MSG_NOSIGNAL);
      if (sent < 0 && errno == EINTR) continue;
      if (sent <= 0) return false;
      p += sent;
      n -= static_cast<std::size_t>(sent);
    }
    return true;
  };

  ServerInit init;
  error = handshake(in, write, init);
  if (!error.empty()) return error_out(error);
  emit("{\"event\":\"init\",\"ms\":" + std::to_string(ms_between(started, now_ns())) +
       ",\"width\":" + std::to_string(init.width) + ",\"height\":" + std::to_string(init.height) +
       ",\"name\":" + json_string(init.name) + "}");
  const auto setup =
      client_setup(offered_encodings(o.encoding, o.quality, o.compress), init.width, init.height);
  if (!write(setup.data(), setup.size())) return error_out("cannot send the client setup");

  RfbStreamParser parser(init.width, init.height);
  bool have_first = false;
  std::int64_t window_start = 0;
  std::uint64_t bytes0 = 0;
  std::uint64_t updates0 = 0;
  std::uint64_t rects0 = 0;
  const char* end = "closed";
  for (;;) {
    const auto message = parser.next(in);
    if (message == RfbStreamParser::Message::kError) return error_out(parser.error());
    if (message == RfbStreamParser::Message::kEnd) {
      if (timed_out) end = "duration";
      break;
    }
    if (message != RfbStreamParser::Message::kUpdate) continue;
    if (!have_first && parser.covered()) {
      have_first = true;
      const std::int64_t t = now_ns();
      emit("{\"event\":\"first_frame\",\"ms\":" + std::to_string(ms_between(started, t)) +
           ",\"ms_since_connect\":" + std::to_string(ms_between(connected, t)) + ",\"bytes\":" +
           std::to_string(in.bytes_used()) + ",\"updates\":" + std::to_string(parser.updates()) +
           ",\"rects\":" + std::to_string(parser.rects()) + "}");
      if (o.duration <= 0) break;
      window_start = t;
      deadline = t + static_cast<std::int64_t>(o.duration * 1e9);
      bytes0 = in.bytes_used();
      updates0 = parser.updates();
      rects0 = parser.rects();
    }
    const auto request = update_request(true, parser.width(), parser.height());
    if (!write(request.data(), request.size())) break;
  }
  if (!have_first) {
    return error_out(timed_out ? "no full frame within --timeout"
                               : "the server closed before a full frame");
  }
  if (o.duration > 0) {
    const double seconds = ms_between(window_start, now_ns()) / 1000.0;
    const std::uint64_t bytes = in.bytes_in() - bytes0;
    const std::uint64_t updates = parser.updates() - updates0;
    std::string encodings;
    for (const auto& [encoding, count] : parser.by_encoding()) {
      encodings += (encodings.empty() ? "\"" : ",\"") + std::to_string(encoding) +
                   "\":" + std::to_string(count);
    }
    emit("{\"event\":\"summary\",\"seconds\":" + std::to_string(seconds) +
         ",\"bytes\":" + std::to_string(bytes) + ",\"updates\":" + std::to_string(updates) +
         ",\"rects\":" + std::to_string(parser.rects() - rects0) +
         ",\"bytes_per_s\":" + std::to_string(seconds > 0 ? bytes / seconds : 0.0) +
         ",\"updates_per_s\":" + std::to_string(seconds > 0 ? updates / seconds : 0.0) +
         ",\"end\":\"" + end + "\",\"encodings\":{" + encodings + "}}");
  }
  if (o.hold) {
    // The server's process lives while the session does: the caller reads its figures
    // (CPU) first, then closes our stdin.
    char byte;
    while (read(STDIN_FILENO, &byte, 1) > 0) {
    }
  }
  close(fd);
  return 0;
}

// ---- --self-test: the parser against a hand-built server stream -------------------------

struct Stream {
  std::vector<std::uint8_t> bytes;
  Stream& u8(unsigned v) {
    bytes.push_back(static_cast<std::uint8_t>(v));
    return *this;
  }
  Stream& u16(unsigned v) { return u8(v >> 8).u8(v); }
  Stream& u32(std::uint32_t v) { return u16(v >> 16).u16(v & 0xffff); }
  Stream& text(const std::string& s) {
    bytes.insert(bytes.end(), s.begin(), s.end());
    return *this;
  }
  Stream& zeros(std::size_t n) {
    bytes.insert(bytes.end(), n, 0);
    return *this;
  }
  Stream& rect(unsigned x, unsigned y, unsigned w, unsigned h, std::int32_t encoding) {
    return u16(x).u16(y).u16(w).u16(h).u32(static_cast<std::uint32_t>(encoding));
  }
};

ByteReader memory_reader(const std::vector<std::uint8_t>& data, std::size_t chunk) {
  auto offset = std::make_shared<std::size_t>(0);
  return ByteReader([&data, offset, chunk](std::uint8_t* out, std::size_t capacity) {
    const std::size_t n = std::min({capacity, chunk, data.size() - *offset});
    std::memcpy(out, data.data() + *offset, n);
    *offset += n;
    return n;
  });
}

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "self-test FAILED: %s\n", what.c_str());
  }
}

void self_test_handshake(std::size_t chunk) {
  Stream s;
  s.text("RFB 003.008\n").u8(2).u8(2).u8(1).u32(0);  // VNC auth and None offered
  s.u16(64).u16(32).u8(32).u8(24).u8(0).u8(1).u16(255).u16(255).u16(255).u8(16).u8(8).u8(0);
  s.zeros(3).u32(4).text("desk");
  ByteReader in = memory_reader(s.bytes, chunk);
  std::vector<std::uint8_t> sent;
  ServerInit init;
  const std::string error = handshake(
      in,
      [&](const void* d, std::size_t n) {
        const auto* p = static_cast<const std::uint8_t*>(d);
        sent.insert(sent.end(), p, p + n);
        return true;
      },
      init);
  check(error.empty(), "handshake: " + error);
  check(std::string(sent.begin(), sent.end()) == std::string("RFB 003.008\n\x01\x01", 14),
        "the client's handshake bytes");
  check(init.width == 64 && init.height == 32 && init.name == "desk" && init.bits_per_pixel == 32,
        "ServerInit");
  Stream refused;
  refused.text("RFB 003.008\n").u8(0).u32(4).text("busy");
  ByteReader in2 = memory_reader(refused.bytes, chunk);
  check(handshake(
            in2, [](const void*, std::size_t) { return true; }, init) == "the server refused: busy",
        "a refusal is reported with its reason");
}

void self_test_exact(std::size_t chunk) {
  Stream s;
  s.u8(0).u8(0).u16(0xffff);
  s.rect(0, 0, 64, 8, kEncodingTight).u8(0x80).zeros(3);
  s.rect(0, 8, 64, 8, kEncodingTight).u8(0x90).u8(0xc8).u8(0x01).zeros(200);
  s.rect(0, 16, 32, 8, kEncodingTight).u8(0x40).u8(1).u8(1).zeros(6).u8(10).zeros(10);
  s.rect(32, 16, 32, 8, kEncodingTight).u8(0x00).u8(0xac).u8(0x02).zeros(300);
  s.rect(0, 24, 2, 1, kEncodingTight).u8(0x00).zeros(6);
  s.rect(2, 24, 4, 1, kEncodingTight).u8(0x50).u8(2).u8(7).zeros(7);  // gradient, 12 B: zlib
  s.rect(6, 24, 58, 8, kEncodingZrle).u32(5).zeros(5);
  s.rect(0, 25, 6, 7, kEncodingRaw).zeros(6 * 7 * 4);
  s.rect(1, 1, 2, 2, kEncodingRichCursor).zeros(16 + 2);
  s.rect(0, 0, 0, 0, kEncodingLastRect);
  s.u8(2);
  s.u8(3).zeros(3).u32(2).text("hi");
  s.u8(0).u8(0).u16(1).rect(0, 0, 1, 1, kEncodingCopyRect).u16(5).u16(5);
  // Header, then per rectangle its 12-byte header and its data.
  const std::size_t first_update = 4 + (12 + 4) + (12 + 3 + 200) + (12 + 3 + 6 + 1 + 10) +
                                   (12 + 3 + 300) + (12 + 7) + (12 + 10) + (12 + 9) + (12 + 168) +
                                   (12 + 18) + 12;

  ByteReader in = memory_reader(s.bytes, chunk);
  RfbStreamParser parser(64, 32);
  check(parser.next(in) == RfbStreamParser::Message::kUpdate, "update 1: " + parser.error());
  check(in.bytes_used() == first_update, "update 1 ends where it should (" +
                                             std::to_string(in.bytes_used()) + " vs " +
                                             std::to_string(first_update) + ")");
  check(parser.covered(), "update 1 covers the 64x32 framebuffer");
  check(parser.rects() == 8 && parser.updates() == 1, "update 1: 8 pixel rectangles");
  check(parser.by_encoding().at(kEncodingTight) == 6, "6 Tight rectangles");
  check(parser.next(in) == RfbStreamParser::Message::kOther, "Bell");
  check(parser.next(in) == RfbStreamParser::Message::kOther, "ServerCutText");
  check(parser.next(in) == RfbStreamParser::Message::kUpdate, "update 2");
  check(in.bytes_used() == s.bytes.size(), "the whole stream is read");
  check(parser.next(in) == RfbStreamParser::Message::kEnd, "then the end");
}

void self_test_refusals() {
  const auto parse = [](const Stream& s, int w, int h) {
    ByteReader in = memory_reader(s.bytes, 7);
    RfbStreamParser parser(w, h);
    RfbStreamParser::Message m;
    while ((m = parser.next(in)) == RfbStreamParser::Message::kUpdate ||
           m == RfbStreamParser::Message::kOther) {
    }
    return std::make_pair(m, parser);
  };
  Stream bad_type;
  bad_type.u8(9);
  check(parse(bad_type, 4, 4).first == RfbStreamParser::Message::kError, "message type 9");
  Stream bad_tight;
  bad_tight.u8(0).u8(0).u16(1).rect(0, 0, 4, 4, kEncodingTight).u8(0xb0);
  check(parse(bad_tight, 4, 4).first == RfbStreamParser::Message::kError, "Tight control 0xb0");
  Stream hextile;
  hextile.u8(0).u8(0).u16(1).rect(0, 0, 4, 4, 5);
  check(parse(hextile, 4, 4).first == RfbStreamParser::Message::kError, "Hextile not offered");
  Stream truncated;
  truncated.u8(0).u8(0).u16(1).rect(0, 0, 4, 4, kEncodingZrle).u32(100).zeros(10);
  auto [m, parser] = parse(truncated, 4, 4);
  check(m == RfbStreamParser::Message::kEnd && parser.updates() == 0, "a truncated update");
  Stream partial;
  partial.u8(0).u8(0).u16(1).rect(0, 0, 2, 4, kEncodingRaw).zeros(32);
  check(!parse(partial, 4, 4).second.covered(), "half the screen is not a full frame");
  Stream resized;
  resized.u8(0)
      .u8(0)
      .u16(2)
      .rect(0, 0, 8, 2, kEncodingDesktopSize)
      .rect(0, 0, 8, 2, kEncodingRaw)
      .zeros(64);
  auto after = parse(resized, 4, 4).second;
  check(after.covered() && after.width() == 8, "DesktopSize then the new screen");
  check(offered_encodings("hextile", 1, 1).empty(), "unknown encodings are refused");
  const auto tight = offered_encodings("tight", 5, 2);
  check(tight[0] == kEncodingTight && tight[1] == -27 && tight[2] == -254, "Tight q5 c2");
  const auto setup = client_setup(offered_encodings("zrle", 0, 2), 100, 50);
  check(setup.size() == 20 + 4 + 4 * 6 + 10 && setup[20] == 2 && setup.back() == 50,
        "SetPixelFormat + SetEncodings + a full update request");
}

int self_test() {
  for (std::size_t chunk : {std::size_t{1}, std::size_t{5}, std::size_t{1} << 20}) {
    self_test_handshake(chunk);
    self_test_exact(chunk);
  }
  self_test_refusals();
  if (failures != 0) return 1;
  emit("{\"event\":\"self_test\",\"ok\":true}");
  return 0;
}

}  // namespace
}  // namespace tether::bench

int main(int argc, char** argv) {
  tether::bench::Options options;
  std::string error;
  if (!tether::bench::parse_options(argc, argv, options, error)) {
    std::fprintf(stderr, "tether-bench-rfb: %s\n%s", error.c_str(), tether::bench::kUsage);
    return 2;
  }
  if (options.self_test) return tether::bench::self_test();
  return tether::bench::run(options);
}
