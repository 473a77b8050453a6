// tether-bench-udp: the udp benchmark's prober (bench/udp/run drives it). Sends discovery
// probes (docs/protocol.md §3: authenticated online checks, or scan probes) to one responder
// at a fixed rate, paced on a monotonic clock, from one or more local source addresses; matches
// each reply to its probe by nonce and prints, as one JSON object, how many were sent,
// answered, lost, and the reply latency percentiles. A benchmark tool: one thread, ppoll, no
// lws loop.
//
//   tether-bench-udp --target 127.0.0.1:PORT --rate 1000 --seconds 5 --kind online
//                    --device-id HEX --key HEX [--sources 127.0.0.1,127.0.1.1] [--drain-ms 500]
//   tether-bench-udp --dump-probe --nonce N --timestamp T --device-id HEX --key HEX
//   tether-bench-udp --self-test     (against a responder of its own on a loopback socket)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/Hex.h"
#include "common/UniqueFd.h"
#include "protocol/DiscoveryDatagram.h"

namespace {

using tether::UniqueFd;
namespace protocol = tether::protocol;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string target_host = "127.0.0.1";
  std::uint16_t target_port = 0;
  double rate = 1000;
  double seconds = 5;
  bool online = true;
  protocol::Sha256 device_id{};
  std::vector<std::uint8_t> key;
  std::vector<std::string> sources{"127.0.0.1"};
  int drain_ms = 500;
  std::uint16_t padding = 0;  // extra zero bytes (a scan probe needs room for the reply)
};

// The nearest-rank percentile (p in 0..100) of sorted values: the ceil(p/100 * n)-th.
double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return std::nan("");
  const auto n = static_cast<double>(sorted.size());
  auto k = static_cast<long>(std::ceil(p / 100.0 * n - 1e-9)) - 1;
  k = std::clamp<long>(k, 0, static_cast<long>(sorted.size()) - 1);
  return sorted[static_cast<std::size_t>(k)];
}

// Probe number `index` (nonce = base + index).
std::vector<std::uint8_t> make_probe(const Options& o, std::uint64_t nonce,
                                     std::uint16_t reply_port, std::uint64_t timestamp) {
  if (o.online) {
    protocol::OnlineProbe p;
    p.nonce = nonce;
    p.reply_port = reply_port;
    p.device_id = o.device_id;
    p.timestamp = timestamp;
    p.padding = o.padding;
    auto bytes = protocol::encode_online_probe(p, o.key);
    return bytes.ok() ? std::move(bytes).value() : std::vector<std::uint8_t>{};
  }
  protocol::ScanProbe p;
  p.nonce = nonce;
  p.reply_port = reply_port;
  p.padding = o.padding;
  auto bytes = protocol::encode_scan_probe(p);
  return bytes.ok() ? std::move(bytes).value() : std::vector<std::uint8_t>{};
}

// What a reply says, for matching: its nonce, and whether it is the answer we asked for
// (right type; for online checks: online, our device, authenticator verifies).
struct ReplyCheck {
  std::uint64_t nonce = 0;
  bool good = false;
};

ReplyCheck check_reply(const Options& o, std::span<const std::uint8_t> data) {
  auto decoded = protocol::decode_datagram(data);
  if (!decoded.ok()) return {};
  if (const auto* r = std::get_if<protocol::OnlineReply>(&*decoded)) {
    const bool good = o.online && r->online && r->device_id == o.device_id && r->authenticator &&
                      protocol::verify_authenticator(o.key, r->signed_bytes, *r->authenticator);
    return {r->nonce, good};
  }
  if (const auto* r = std::get_if<protocol::ScanReply>(&*decoded)) return {r->nonce, !o.online};
  return {};
}

struct Source {
  UniqueFd fd;
  std::uint16_t port = 0;
};

struct Run {
  std::uint64_t sent = 0;
  std::uint64_t send_errors = 0;
  std::uint64_t replies = 0;
  std::uint64_t bad = 0;
  std::uint64_t unmatched = 0;
  std::uint64_t duplicates = 0;
  double send_seconds = 0;
  double max_send_lag_us = 0;  // how far behind schedule the pacing fell at worst
  std::vector<double> latencies_us;
};

tether::Result<Source> open_source(const std::string& address) {
  Source s;
  s.fd.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.fd) return tether::make_error(tether::Errc::kIo, std::strerror(errno));
  const int buf = 8 << 20;
  (void)::setsockopt(s.fd.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  (void)::setsockopt(s.fd.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  if (::inet_pton(AF_INET, address.c_str(), &sin.sin_addr) != 1) {
    return tether::make_error(tether::Errc::kBadValue, "not an IPv4 address: " + address);
  }
  if (::bind(s.fd.get(), reinterpret_cast<const sockaddr*>(&sin), sizeof sin) != 0) {
    return tether::make_error(tether::Errc::kIo, "bind " + address + ": " + std::strerror(errno));
  }
  socklen_t len = sizeof sin;
  ::getsockname(s.fd.get(), reinterpret_cast<sockaddr*>(&sin), &len);
  s.port = ntohs(sin.sin_port);
  return s;
}

// An in-process responder for --self-test: answers online probes the way the agent does.
struct FakeResponder {
  UniqueFd fd;
  std::uint16_t port = 0;
  const Options* o = nullptr;
  std::uint64_t answered = 0;

  void pump() {
    for (;;) {
      std::uint8_t buf[protocol::kMaxDatagramSize];
      sockaddr_in from{};
      socklen_t len = sizeof from;
      const ssize_t n =
          ::recvfrom(fd.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n <= 0) return;
      auto decoded = protocol::decode_datagram(std::span<const std::uint8_t>(buf, std::size_t(n)));
      if (!decoded.ok()) continue;
      const auto* probe = std::get_if<protocol::OnlineProbe>(&*decoded);
      if (probe == nullptr || !probe->authenticator ||
          !protocol::verify_authenticator(o->key, probe->signed_bytes, *probe->authenticator)) {
        continue;
      }
      if (probe->nonce % 10 == 3) continue;  // lose every tenth on purpose
      protocol::OnlineReply reply;
      reply.nonce = probe->nonce;
      reply.device_id = probe->device_id;
      auto bytes = protocol::encode_online_reply(reply, std::size_t(n), o->key);
      if (!bytes.ok()) continue;
      from.sin_port = htons(probe->reply_port);
      if (::sendto(fd.get(), bytes->data(), bytes->size(), 0, reinterpret_cast<sockaddr*>(&from),
                   sizeof from) > 0) {
        ++answered;
      }
    }
  }
};

tether::Result<Run> run(const Options& o, FakeResponder* fake) {
  std::vector<Source> sources;
  for (const auto& a : o.sources) {
    auto s = open_source(a);
    if (!s.ok()) return s.error();
    sources.push_back(std::move(s).value());
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(o.target_port);
  if (::inet_pton(AF_INET, o.target_host.c_str(), &to.sin_addr) != 1) {
    return tether::make_error(tether::Errc::kBadValue, "not an IPv4 address: " + o.target_host);
  }
  const auto total = static_cast<std::uint64_t>(std::llround(o.rate * o.seconds));
  std::mt19937_64 rng(std::random_device{}());
  // Room above the base for every index; the top bits are random so that a stray reply from
  // an earlier run does not match.
  const std::uint64_t base = (rng() | (std::uint64_t{1} << 63)) & ~std::uint64_t{0xFFFFFFFF};
  std::vector<Clock::time_point> sent_at(total);
  std::vector<bool> answered(total, false);
  Run r;
  r.latencies_us.reserve(total);

  std::vector<pollfd> fds;
  for (const auto& s : sources) fds.push_back({s.fd.get(), POLLIN, 0});
  if (fake != nullptr) fds.push_back({fake->fd.get(), POLLIN, 0});

  auto receive = [&](const Source& s) {
    for (;;) {
      std::uint8_t buf[protocol::kMaxDatagramSize + 1];
      const ssize_t n = ::recv(s.fd.get(), buf, sizeof buf, 0);
      if (n < 0) return;
      const auto now = Clock::now();
      const ReplyCheck c = check_reply(o, std::span<const std::uint8_t>(buf, std::size_t(n)));
      if (!c.good) {
        ++r.bad;
        continue;
      }
      const std::uint64_t index = c.nonce - base;
      if (c.nonce < base || index >= r.sent) {
        ++r.unmatched;
        continue;
      }
      if (answered[index]) {
        ++r.duplicates;
        continue;
      }
      answered[index] = true;
      ++r.replies;
      r.latencies_us.push_back(
          std::chrono::duration<double, std::micro>(now - sent_at[index]).count());
    }
  };

  const double interval_s = 1.0 / o.rate;
  const auto t0 = Clock::now();
  const auto timestamp = static_cast<std::uint64_t>(std::time(nullptr));
  Clock::time_point drain_until{};
  for (;;) {
    const auto now = Clock::now();
    // Send everything that is due (catching up, if the loop fell behind, without bursts
    // larger than what is due).
    while (r.sent < total) {
      const auto due = t0 + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(double(r.sent) * interval_s));
      if (due > now) break;
      r.max_send_lag_us =
          std::max(r.max_send_lag_us, std::chrono::duration<double, std::micro>(now - due).count());
      const Source& s = sources[r.sent % sources.size()];
      const std::uint64_t stamp =
          timestamp + static_cast<std::uint64_t>(std::chrono::duration<double>(now - t0).count());
      const auto probe = make_probe(o, base + r.sent, s.port, stamp);
      sent_at[r.sent] = Clock::now();
      if (probe.empty() || ::sendto(s.fd.get(), probe.data(), probe.size(), 0,
                                    reinterpret_cast<const sockaddr*>(&to), sizeof to) < 0) {
        ++r.send_errors;
      }
      ++r.sent;
      if (r.sent == total) {
        r.send_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
        drain_until = Clock::now() + std::chrono::milliseconds(o.drain_ms);
      }
    }
    if (r.sent == total && (Clock::now() >= drain_until || r.replies == total)) break;
    const auto wake = r.sent < total
                          ? t0 + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(double(r.sent) * interval_s))
                          : drain_until;
    const auto wait = std::max(Clock::duration::zero(), wake - Clock::now());
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(std::chrono::duration_cast<std::chrono::seconds>(wait).count());
    ts.tv_nsec = static_cast<long>((wait - std::chrono::seconds(ts.tv_sec)).count() *
                                   Clock::period::num * 1000000000 / Clock::period::den);
    if (::ppoll(fds.data(), fds.size(), &ts, nullptr) < 0 && errno != EINTR) {
      return tether::make_error(tether::Errc::kIo, std::string("ppoll: ") + std::strerror(errno));
    }
    if (fake != nullptr) fake->pump();
    for (const auto& s : sources) receive(s);
  }
  return r;
}

nlohmann::json to_json(const Options& o, Run& r) {
  std::sort(r.latencies_us.begin(), r.latencies_us.end());
  const auto pct = [&r](double p) -> nlohmann::json {
    if (r.latencies_us.empty()) return nullptr;
    return std::round(percentile(r.latencies_us, p) * 10) / 10;
  };
  const std::uint64_t lost = r.sent - r.replies;
  return {
      {"kind", o.online ? "online" : "scan"},
      {"rate", o.rate},
      {"seconds", o.seconds},
      {"sources", o.sources.size()},
      {"sent", r.sent},
      {"send_errors", r.send_errors},
      {"replies", r.replies},
      {"lost", lost},
      {"loss_percent", r.sent ? 100.0 * double(lost) / double(r.sent) : 0.0},
      {"bad_replies", r.bad},
      {"unmatched", r.unmatched},
      {"duplicates", r.duplicates},
      {"send_seconds", r.send_seconds},
      {"achieved_rate", r.send_seconds > 0 ? double(r.sent) / r.send_seconds : 0.0},
      {"max_send_lag_us", std::round(r.max_send_lag_us)},
      {"latency_us", {{"p50", pct(50)}, {"p90", pct(90)}, {"p99", pct(99)}, {"max", pct(100)}}}};
}

bool parse_hex32(std::string_view text, protocol::Sha256& out) {
  auto bytes = tether::hex_decode(text);
  if (!bytes.ok() || bytes->size() != out.size()) return false;
  std::copy(bytes->begin(), bytes->end(), out.begin());
  return true;
}

int self_test() {
  int failures = 0;
  auto expect = [&failures](bool ok, const char* what) {
    if (!ok) {
      std::fprintf(stderr, "self-test FAILED: %s\n", what);
      ++failures;
    }
  };
  // Percentiles: nearest rank, as benchlib.percentile.
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  expect(percentile(v, 50) == 50 && percentile(v, 99) == 99 && percentile(v, 100) == 100,
         "percentile of 1..100");
  expect(percentile({7}, 99) == 7, "percentile of one value");

  Options o;
  o.key.assign(32, 0x42);
  o.device_id.fill(0xab);
  // A probe the codec takes back, signed with the key; the reply to it verifies.
  const auto probe = make_probe(o, 77, 40000, 1700000000);
  expect(probe.size() == 93, "an authenticated online probe is 93 bytes");
  auto decoded = protocol::decode_datagram(probe);
  const auto* p = decoded.ok() ? std::get_if<protocol::OnlineProbe>(&*decoded) : nullptr;
  expect(p != nullptr && p->nonce == 77 && p->timestamp == 1700000000 && p->authenticator &&
             protocol::verify_authenticator(o.key, p->signed_bytes, *p->authenticator),
         "the probe decodes and its authenticator verifies");
  protocol::OnlineReply reply;
  reply.nonce = 77;
  reply.device_id = o.device_id;
  auto reply_bytes = protocol::encode_online_reply(reply, probe.size(), o.key);
  expect(reply_bytes.ok() && check_reply(o, *reply_bytes).good &&
             check_reply(o, *reply_bytes).nonce == 77,
         "a good reply matches");
  Options wrong = o;
  wrong.key.assign(32, 0x43);
  expect(reply_bytes.ok() && !check_reply(wrong, *reply_bytes).good,
         "a reply signed with another key does not");

  // A short run against a responder of our own that drops every tenth probe.
  FakeResponder fake;
  auto fake_source = open_source("127.0.0.1");
  if (!fake_source.ok()) {
    std::fprintf(stderr, "self-test: %s\n", fake_source.error().message.c_str());
    return 1;
  }
  fake.fd = std::move(fake_source->fd);
  fake.port = fake_source->port;
  fake.o = &o;
  o.target_port = fake.port;
  o.rate = 2000;
  o.seconds = 0.25;
  o.drain_ms = 300;
  auto result = run(o, &fake);
  expect(result.ok(), "the loopback run");
  if (result.ok()) {
    const auto j = to_json(o, *result);
    std::cerr << "self-test run: " << j.dump() << "\n";
    expect(j["sent"] == 500, "500 probes sent");
    expect(j["replies"] == 450 && j["lost"] == 50, "450 answered, every tenth lost");
    expect(j["bad_replies"] == 0 && j["duplicates"] == 0, "no bad or duplicate replies");
    expect(!j["latency_us"]["p99"].is_null(), "latencies measured");
  }
  std::fprintf(stderr, "self-test: %s\n", failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}

int usage() {
  std::fprintf(stderr,
               "usage: tether-bench-udp --target HOST:PORT --rate N --seconds S "
               "[--kind online|scan] [--device-id HEX --key HEX] [--sources A,B,...] "
               "[--drain-ms MS] [--padding N]\n"
               "       tether-bench-udp --dump-probe --nonce N --timestamp T --device-id HEX "
               "--key HEX\n"
               "       tether-bench-udp --self-test\n");
  return 2;
}

}  // namespace

static int main_checked(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.size() == 1 && args[0] == "--self-test") return self_test();
  Options o;
  bool dump = false;
  std::uint64_t nonce = 0, timestamp = 0;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (a == "--dump-probe") {
      dump = true;
      continue;
    }
    if (i + 1 >= args.size()) return usage();
    const std::string value(args[++i]);
    if (a == "--target") {
      const auto colon = value.rfind(':');
      if (colon == std::string::npos) return usage();
      o.target_host = value.substr(0, colon);
      o.target_port = static_cast<std::uint16_t>(std::stoul(value.substr(colon + 1)));
    } else if (a == "--rate") {
      o.rate = std::stod(value);
    } else if (a == "--seconds") {
      o.seconds = std::stod(value);
    } else if (a == "--kind") {
      if (value != "online" && value != "scan") return usage();
      o.online = value == "online";
    } else if (a == "--device-id") {
      if (!parse_hex32(value, o.device_id)) return usage();
    } else if (a == "--key") {
      auto k = tether::hex_decode(value);
      if (!k.ok() || k->size() != 32) return usage();
      o.key = std::move(k).value();
    } else if (a == "--sources") {
      o.sources.clear();
      std::size_t start = 0;
      while (start <= value.size()) {
        const auto comma = value.find(',', start);
        const auto item = value.substr(start, comma == std::string::npos ? comma : comma - start);
        if (!item.empty()) o.sources.push_back(item);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
      if (o.sources.empty()) return usage();
    } else if (a == "--drain-ms") {
      o.drain_ms = std::stoi(value);
    } else if (a == "--padding") {
      o.padding = static_cast<std::uint16_t>(std::stoul(value));
    } else if (a == "--nonce") {
      nonce = std::stoull(value);
    } else if (a == "--timestamp") {
      timestamp = std::stoull(value);
    } else {
      return usage();
    }
  }
  if (dump) {
    std::cout << tether::hex_encode(make_probe(o, nonce, 40000, timestamp)) << "\n";
    return 0;
  }
  if (o.target_port == 0 || o.rate <= 0 || o.seconds <= 0 || (o.online && o.key.empty())) {
    return usage();
  }
  // Pacing at 200 µs needs the timer to fire when asked, not up to 50 µs later.
  (void)::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  auto result = run(o, nullptr);
  if (!result.ok()) {
    std::fprintf(stderr, "tether-bench-udp: %s\n", result.error().message.c_str());
    return 1;
  }
  std::cout << to_json(o, *result).dump() << "\n";
  return 0;
}

int main(int argc, char** argv) {
  try {
    return main_checked(argc, argv);
  } catch (const std::exception& e) {  // std::stoul and friends on a bad number
    std::fprintf(stderr, "tether-bench-udp: %s\n", e.what());
    return usage();
  }
}
