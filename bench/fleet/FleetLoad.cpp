// tether-bench-fleet: the fleet benchmark's load generator (bench/fleet/run drives it).
//
// One process, one epoll loop, many simulated agents, each an idle UP channel over a real
// mutual-TLS WebSocket (docs/protocol.md §2): TCP from one of several 127.0.0.x source
// addresses (bound before connect, so every address has its own ephemeral port range), a TLS
// handshake with the device's own certificate, the upgrade with subprotocol tether.up.v1,
// hello, and from then on only answers: pongs to the server's pings, results to its requests.
// It is written on plain OpenSSL rather than libwebsockets because one lws vhost and SSL_CTX
// per device (tests/tools/FleetSimulator.cpp) does not scale to 100k connections: here all
// devices share one SSL_CTX and each SSL gets its own key and certificate.
//
//   tether-bench-fleet --self-test
//   tether-bench-fleet enroll --server HOST:PORT --ca-file FILE --admin-token FILE
//                             --identities FILE --count N [--jobs 4]
//   tether-bench-fleet run --connect HOST:PORT[,HOST:PORT...] --ca-file FILE --identities FILE
//                          [--sources 127.0.0.2-127.0.0.9] [--inflight 128]
//                          [--restart-spread 10s] [--backoff-base 1s] [--backoff-cap 30s]
//                          [--handshake-timeout 30s] [--dry-run]
//
// enroll: makes sure FILE holds N identities (one line each: device id, key DER and
// certificate DER in hex), enrolling the missing ones over the REST API (an enrollment token
// each, made with the admin token); prints how long that took.
// run: reads commands on stdin ("target N": keep devices 0..N-1 connected; "quit") and
// prints one JSON line per half second on stdout: connected, in flight, cumulative attempts,
// failures, channels opened and closed. The reconnect rule is the agent's (§2.4): after a
// restart close (1012/1001) a uniformly random delay within the restart spread, after a
// failure full-jitter exponential backoff. The ramp to a new target keeps at most --inflight
// handshakes under way; reconnects start when their timer fires, as real agents would.
// Several --connect endpoints (server instances): device i starts at endpoint i mod N and, as
// the agent's endpoint list does (agent/EndpointList.h), moves on to the next one when an
// attempt fails or its channel is lost, and stays after a restart close; the stat lines then
// also count connections and channels opened per endpoint.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/DeviceIdentity.h"
#include "bench/support/KeepAliveHttps.h"
#include "bench/support/TlsClient.h"
#include "bench/support/WsFrame.h"
#include "common/FileIo.h"
#include "platform/Pki.h"

namespace tether::bench {
namespace {

using json = nlohmann::json;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---- argument parsing -------------------------------------------------------------------

struct Args {
  std::string command;
  std::map<std::string, std::string> values;
  std::string error;

  std::string get(const std::string& key, const std::string& fallback = "") const {
    auto it = values.find(key);
    return it == values.end() ? fallback : it->second;
  }
};

Args parse_args(const std::vector<std::string>& argv) {
  Args args;
  static const std::vector<std::string> kValued = {
      "server",      "ca-file",           "admin-token", "identities",     "count",
      "connect",     "sources",           "inflight",    "restart-spread", "backoff-base",
      "backoff-cap", "handshake-timeout", "jobs"};
  std::size_t i = 0;
  if (i < argv.size() && argv[i].rfind("--", 0) != 0) args.command = argv[i++];
  for (; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "--self-test" || a == "--dry-run") {
      args.values[a.substr(2)] = "1";
      continue;
    }
    if (a.rfind("--", 0) != 0 ||
        std::find(kValued.begin(), kValued.end(), a.substr(2)) == kValued.end()) {
      args.error = "unknown argument " + a;
      return args;
    }
    if (i + 1 >= argv.size()) {
      args.error = a + " needs a value";
      return args;
    }
    args.values[a.substr(2)] = argv[++i];
  }
  if (args.command.empty() && args.values.count("self-test") == 0) {
    args.error = "need a command: enroll or run (or --self-test)";
  } else if (!args.command.empty() && args.command != "enroll" && args.command != "run") {
    args.error = "unknown command " + args.command;
  }
  return args;
}

// "10s", "250ms", "2m", "1.5s" → milliseconds.
std::optional<std::int64_t> parse_duration_ms(const std::string& text) {
  std::size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (...) {
    return std::nullopt;
  }
  const std::string unit = text.substr(pos);
  double scale = 0;
  if (unit == "ms")
    scale = 1;
  else if (unit == "s")
    scale = 1000;
  else if (unit == "m")
    scale = 60000;
  else
    return std::nullopt;
  if (v < 0) return std::nullopt;
  return static_cast<std::int64_t>(v * scale);
}

std::optional<long> parse_count(const std::string& text) {
  if (text.empty() || text.size() > 9 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  return std::stol(text);
}

// "127.0.0.2-127.0.0.9" or "127.0.0.2,127.0.0.5" → addresses (host byte order).
std::optional<std::vector<std::uint32_t>> parse_sources(const std::string& text) {
  std::vector<std::uint32_t> out;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ',')) {
    const auto dash = part.find('-');
    const std::string first = part.substr(0, dash);
    const std::string last = dash == std::string::npos ? first : part.substr(dash + 1);
    in_addr a{}, b{};
    if (inet_pton(AF_INET, first.c_str(), &a) != 1 || inet_pton(AF_INET, last.c_str(), &b) != 1) {
      return std::nullopt;
    }
    const std::uint32_t lo = ntohl(a.s_addr), hi = ntohl(b.s_addr);
    if (hi < lo || hi - lo > 1024) return std::nullopt;
    for (std::uint32_t x = lo; x <= hi; ++x) out.push_back(x);
  }
  if (out.empty()) return std::nullopt;
  return out;
}

std::optional<std::pair<std::string, std::uint16_t>> parse_host_port(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  auto port = parse_count(text.substr(colon + 1));
  if (!port || *port < 1 || *port > 65535) return std::nullopt;
  return std::make_pair(text.substr(0, colon), static_cast<std::uint16_t>(*port));
}

// "127.0.0.1:8443,127.0.0.1:8444" → endpoints in that order (at most 16).
std::optional<std::vector<std::pair<std::string, std::uint16_t>>> parse_endpoints(
    const std::string& text) {
  std::vector<std::pair<std::string, std::uint16_t>> out;
  std::size_t start = 0;
  for (;;) {  // not std::getline: "A," must fail on its empty last part
    const std::size_t comma = text.find(',', start);
    auto hp = parse_host_port(text.substr(start, comma - start));
    if (!hp || out.size() == 16) return std::nullopt;
    out.push_back(*hp);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// ---- hex and identities -----------------------------------------------------------------

std::string to_hex(const unsigned char* p, std::size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    s[2 * i] = d[p[i] >> 4];
    s[2 * i + 1] = d[p[i] & 15];
  }
  return s;
}

std::optional<std::vector<unsigned char>> from_hex(std::string_view s) {
  if (s.size() % 2 != 0) return std::nullopt;
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::vector<unsigned char> out(s.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = nib(s[2 * i]), lo = nib(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return out;
}

struct Identity {
  std::string device_id;
  std::vector<unsigned char> key_der;
  std::vector<unsigned char> cert_der;
};

// What a connection attempt needs, parsed once: with OpenSSL 3 decoding a key costs more
// than the rest of the client's side of a handshake.
struct LoadedIdentity {
  std::string device_id;
  X509* cert = nullptr;
  EVP_PKEY* key = nullptr;
};

std::optional<Identity> parse_identity_line(const std::string& line) {
  std::stringstream ss(line);
  std::string id, key, cert;
  if (!(ss >> id >> key >> cert) || id.size() != 64) return std::nullopt;
  auto k = from_hex(key);
  auto c = from_hex(cert);
  if (!k || !c || k->empty() || c->empty()) return std::nullopt;
  return Identity{id, std::move(*k), std::move(*c)};
}

std::vector<Identity> load_identities(const std::string& path, std::size_t limit) {
  std::vector<Identity> out;
  std::ifstream in(path);
  std::string line;
  while (out.size() < limit && std::getline(in, line)) {
    if (auto id = parse_identity_line(line)) out.push_back(std::move(*id));
  }
  return out;
}

// ---- WebSocket frames (bench/support/WsFrame.h) -----------------------------------------

std::uint32_t g_rand = 0x9e3779b9u;
std::uint32_t next_rand() {
  g_rand ^= g_rand << 13;
  g_rand ^= g_rand >> 17;
  g_rand ^= g_rand << 5;
  return g_rand;
}

// One client frame, masked with the next random number.
std::string ws_frame(std::uint8_t opcode, std::string_view payload) {
  const std::uint32_t m = next_rand();
  const std::uint8_t mask[4] = {static_cast<std::uint8_t>(m >> 24),
                                static_cast<std::uint8_t>(m >> 16),
                                static_cast<std::uint8_t>(m >> 8), static_cast<std::uint8_t>(m)};
  std::string f;
  ws::append_frame(f, opcode, payload, mask);
  return f;
}

// The largest frame the server may send us: anything longer is a protocol error.
constexpr std::uint64_t kMaxFrame = 1u << 20;

// The value of a string member in compact JSON ("key":"value"), enough for envelopes.
std::string json_string_member(std::string_view text, std::string_view key) {
  std::string needle = "\"" + std::string(key) + "\":\"";
  auto at = text.find(needle);
  if (at == std::string_view::npos) return {};
  at += needle.size();
  const auto end = text.find('"', at);
  if (end == std::string_view::npos) return {};
  return std::string(text.substr(at, end - at));
}

std::string hello_text(const std::string& device_id, std::size_t index) {
  return json{{"v", 1},
              {"type", "hello"},
              {"id", "d1"},
              {"body",
               {{"device_id", device_id},
                {"agent_version", "0.1.0-bench"},
                {"os",
                 {{"name", "Debian GNU/Linux"},
                  {"version", "12"},
                  {"kernel", "6.1.0"},
                  {"arch", "x86_64"}}},
                {"hostname", "fleet-" + std::to_string(index)}}}}
      .dump();
}

std::string result_text(const std::string& id) {
  return json{{"v", 1}, {"type", "result"}, {"id", id}, {"body", {{"ok", true}}}}.dump();
}

// ---- self-test --------------------------------------------------------------------------

int self_test() {
  int failed = 0;
  auto check = [&failed](bool ok, const char* what) {
    if (!ok) {
      std::cerr << "self-test FAILED: " << what << "\n";
      ++failed;
    }
  };
  check(parse_duration_ms("10s") == 10000, "10s");
  check(parse_duration_ms("250ms") == 250, "250ms");
  check(parse_duration_ms("1.5s") == 1500, "1.5s");
  check(parse_duration_ms("2m") == 120000, "2m");
  check(!parse_duration_ms("10"), "10 without unit");
  check(!parse_duration_ms("x"), "x");
  auto s = parse_sources("127.0.0.2-127.0.0.4,127.0.0.9");
  check(s && s->size() == 4 && (*s)[0] == 0x7f000002 && (*s)[3] == 0x7f000009, "sources");
  check(!parse_sources("127.0.0.9-127.0.0.2"), "reversed sources");
  check(!parse_sources("nonsense"), "bad sources");
  auto hp = parse_host_port("127.0.0.1:8443");
  check(hp && hp->first == "127.0.0.1" && hp->second == 8443, "host:port");
  check(!parse_host_port("127.0.0.1:99999"), "port range");
  auto eps = parse_endpoints("127.0.0.1:8443,127.0.0.1:8444");
  check(eps && eps->size() == 2 && (*eps)[1].second == 8444, "endpoint list");
  check(!parse_endpoints("127.0.0.1:8443,"), "empty endpoint");
  check(!parse_endpoints("127.0.0.1:8443,nothing"), "bad endpoint");
  check(parse_args({"run", "--count"}).error == "--count needs a value", "missing value");
  check(!parse_args({"run", "--bogus", "1"}).error.empty(), "unknown option");
  check(!parse_args({"fly"}).error.empty(), "unknown command");
  check(parse_args({"run", "--inflight", "64"}).get("inflight") == "64", "valued option");
  // Frames: what we send parses back (masked), lengths at each size class. The framing
  // itself is unit-tested with the library (bench/support/WsFrameTest.cpp).
  for (std::size_t n : {std::size_t{0}, std::size_t{125}, std::size_t{126}, std::size_t{70000}}) {
    std::string payload(n, 'x');
    std::string buf = ws_frame(ws::kOpText, payload) + "tail";
    auto fr = ws::take_frame(buf, kMaxFrame);
    check(fr && fr->opcode == ws::kOpText && fr->payload == payload && buf == "tail",
          "frame round trip");
  }
  const std::string env = R"({"v":1,"type":"trust_update","id":"s1","body":{}})";
  check(json_string_member(env, "type") == "trust_update" && json_string_member(env, "id") == "s1",
        "envelope members");
  auto hello = json::parse(hello_text(std::string(64, 'a'), 7));
  check(hello["type"] == "hello" && hello["body"]["hostname"] == "fleet-7", "hello");
  const std::vector<unsigned char> bytes = {0x00, 0x7f, 0xff};
  check(from_hex(to_hex(bytes.data(), bytes.size())) == bytes, "hex round trip");
  check(!parse_identity_line("short 00 00"), "bad identity line");
  check(parse_identity_line(std::string(64, 'a') + " 0a0b 0c").has_value(), "identity line");
  if (failed == 0) std::cout << "self-test ok\n";
  return failed == 0 ? 0 : 1;
}

// ---- enroll -----------------------------------------------------------------------------

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// Enrolls devices first, first + step, ... below count into `out`, over one kept-alive
// connection; returns how many, or -1 after the first failure (the ones before it are kept).
long enroll_some(const std::pair<std::string, int>& hp, const std::string& ca_file,
                 const std::string& admin, std::size_t first, std::size_t step, std::size_t count,
                 std::ostream& out) {
  KeepAliveHttps http(hp.first, static_cast<std::uint16_t>(hp.second), ca_file);
  long made = 0;
  for (std::size_t i = first; i < count; i += step) {
    HttpAnswer created;
    std::string error;
    if (!http.request("POST", "/api/v1/enroll-tokens",
                      {{"Authorization", "Bearer " + admin}, {"Content-Type", "application/json"}},
                      "{}", created, error) ||
        created.status != 201) {
      std::cerr << "token " << i << ": " << (error.empty() ? created.body : error) << "\n";
      return -1;
    }
    const std::string token_text = json::parse(created.body).value("token", "");
    const std::string secret = token_text.substr(token_text.rfind('.') + 1);
    auto identity = agent::DeviceIdentity::generate();
    if (!identity.ok()) return -1;
    auto csr = pki::make_csr_pem(identity->key(), identity->device_id());
    if (!csr.ok()) return -1;
    const std::string body = json{
        {"secret", secret},
        {"csr_pem", *csr},
        {"hostname", "fleet-" + std::to_string(i)},
        {"macs", json::array()}}.dump();
    HttpAnswer enrolled;
    if (!http.request("POST", "/api/v1/enroll", {{"Content-Type", "application/json"}}, body,
                      enrolled, error) ||
        enrolled.status != 201) {
      std::cerr << "enroll " << i << ": " << (error.empty() ? enrolled.body : error) << "\n";
      return -1;
    }
    auto cert = pki::certificate_from_pem(json::parse(enrolled.body).value("certificate_pem", ""));
    if (!cert.ok()) return -1;
    unsigned char* kd = nullptr;
    unsigned char* cd = nullptr;
    const int kn = i2d_PrivateKey(identity->key(), &kd);
    const int cn = i2d_X509(cert->get(), &cd);
    if (kn <= 0 || cn <= 0) return -1;
    out << identity->device_id() << ' ' << to_hex(kd, static_cast<std::size_t>(kn)) << ' '
        << to_hex(cd, static_cast<std::size_t>(cn)) << '\n';
    OPENSSL_free(kd);
    OPENSSL_free(cd);
    ++made;
  }
  return made;
}

// The server is one event loop, so one client waiting on each round trip leaves it idle half
// the time; a few worker processes (each its own blocking client, each writing its own part
// file that the parent appends whole) keep it busy. Processes rather than threads: the
// clients share nothing, and a worker that fails loses only its own part.
int enroll(const Args& args) {
  auto hp = parse_host_port(args.get("server"));
  auto count = parse_count(args.get("count"));
  auto jobs = parse_count(args.get("jobs", "4"));
  const std::string path = args.get("identities");
  auto token = read_file(args.get("admin-token"));
  auto ca_pem = read_file(args.get("ca-file"));
  if (!hp || !count || !jobs || *jobs < 1 || *jobs > 64 || path.empty() || !token.ok() ||
      !ca_pem.ok()) {
    std::cerr << "enroll needs --server HOST:PORT --count N --identities FILE --admin-token FILE "
                 "--ca-file FILE [--jobs 1..64]\n";
    return 2;
  }
  const std::string admin = trim(*token);
  const auto total = static_cast<std::size_t>(*count);
  auto have = load_identities(path, total).size();
  if (have >= total) {
    std::cout << json{{"event", "enrolled"}, {"have", have}, {"new", 0}, {"seconds", 0.0}}.dump()
              << std::endl;
    return 0;
  }
  const std::string ca_file = args.get("ca-file");
  const auto t0 = now_ms();
  const auto workers = std::min<std::size_t>(static_cast<std::size_t>(*jobs), total - have);
  std::vector<pid_t> pids;
  std::cout.flush();
  for (std::size_t k = 0; k < workers; ++k) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      std::cerr << "fork: " << std::strerror(errno) << "\n";
      break;
    }
    if (pid == 0) {
      // Unbuffered: the parent counts the lines written so far to show progress.
      std::ofstream part(path + ".part" + std::to_string(k), std::ios::trunc);
      part << std::unitbuf;
      const long made = enroll_some(*hp, ca_file, admin, have + k, workers, total, part);
      part.flush();
      ::_exit(made >= 0 && part ? 0 : 1);
    }
    pids.push_back(pid);
  }
  bool failed = pids.size() != workers;
  // Progress every few seconds: the lines the workers have written so far.
  std::vector<std::uint64_t> seen_bytes(pids.size(), 0);
  std::size_t lines = 0;
  std::size_t running = pids.size();
  std::vector<bool> exited(pids.size(), false);
  auto last_report = now_ms();
  while (running > 0) {
    for (std::size_t k = 0; k < pids.size(); ++k) {
      if (exited[k]) continue;
      int status = 0;
      const pid_t r = ::waitpid(pids[k], &status, WNOHANG);
      if (r == 0 || (r < 0 && errno == EINTR)) continue;
      exited[k] = true;
      --running;
      if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = true;
    }
    if (running == 0) break;
    ::usleep(200 * 1000);
    if (now_ms() - last_report < 5000) continue;
    last_report = now_ms();
    for (std::size_t k = 0; k < pids.size(); ++k) {
      std::ifstream part(path + ".part" + std::to_string(k));
      part.seekg(static_cast<std::streamoff>(seen_bytes[k]));
      char buf[65536];
      while (part.read(buf, sizeof buf) || part.gcount() > 0) {
        const auto n = static_cast<std::size_t>(part.gcount());
        lines += static_cast<std::size_t>(std::count(buf, buf + n, '\n'));
        seen_bytes[k] += n;
      }
    }
    std::cout << json{{"event", "enrolling"},
                      {"have", have + lines},
                      {"of", total},
                      {"seconds", (now_ms() - t0) / 1000.0}}
                     .dump()
              << std::endl;
  }
  // Whole lines only: what a failed worker did enroll is kept.
  std::ofstream out(path, std::ios::app);
  std::size_t made = 0;
  for (std::size_t k = 0; k < pids.size(); ++k) {
    const std::string part_path = path + ".part" + std::to_string(k);
    std::ifstream part(part_path);
    std::string line;
    while (std::getline(part, line)) {
      if (!parse_identity_line(line)) continue;
      out << line << '\n';
      ++made;
    }
    ::unlink(part_path.c_str());
  }
  out.flush();
  std::cout << json{{"event", "enrolled"},
                    {"have", have + made},
                    {"new", made},
                    {"jobs", workers},
                    {"seconds", (now_ms() - t0) / 1000.0}}
                   .dump()
            << std::endl;
  return out && !failed ? 0 : 1;
}

// ---- run --------------------------------------------------------------------------------

enum class State : std::uint8_t { kIdle, kConnecting, kTls, kUpgrade, kHello, kOpen };

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  State state = State::kIdle;
  bool want_out = false;
  std::uint8_t failures = 0;
  std::uint8_t ep = 0;  // index into Config::endpoints
  std::uint32_t gen = 0;
  std::int64_t started_ms = 0;
  std::string in;   // bytes not yet consumed (upgrade answer, partial frames)
  std::string out;  // bytes SSL_write could not take yet
};

struct Config {
  std::vector<std::pair<std::string, std::uint16_t>> endpoints;
  std::vector<std::uint32_t> sources;
  long inflight = 128;
  std::int64_t restart_spread_ms = 10000;
  std::int64_t backoff_base_ms = 1000;
  std::int64_t backoff_cap_ms = 30000;
  std::int64_t handshake_timeout_ms = 30000;
};

class Fleet {
 public:
  Fleet(Config config, std::vector<Identity> ids, SSL_CTX* ctx)
      : cfg_(std::move(config)),
        ctx_(ctx),
        conns_(ids.size()),
        connected_by_ep_(cfg_.endpoints.size()),
        opened_by_ep_(cfg_.endpoints.size()) {
    for (std::size_t i = 0; i < conns_.size(); ++i) {
      conns_[i].ep = static_cast<std::uint8_t>(i % cfg_.endpoints.size());
    }
    ids_.reserve(ids.size());
    for (Identity& id : ids) {
      LoadedIdentity l;
      l.device_id = std::move(id.device_id);
      const unsigned char* c = id.cert_der.data();
      l.cert = d2i_X509(nullptr, &c, static_cast<long>(id.cert_der.size()));
      const unsigned char* k = id.key_der.data();
      l.key = d2i_PrivateKey(EVP_PKEY_EC, nullptr, &k, static_cast<long>(id.key_der.size()));
      ids_.push_back(std::move(l));
      std::vector<unsigned char>().swap(id.key_der);
      std::vector<unsigned char>().swap(id.cert_der);
    }
  }

  bool identities_ok() const {
    return std::all_of(ids_.begin(), ids_.end(), [](const LoadedIdentity& l) {
      return l.cert != nullptr && l.key != nullptr;
    });
  }

  int loop() {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kStdin;
    epoll_ctl(ep_, EPOLL_CTL_ADD, 0, &ev);
    t0_ = now_ms();
    std::int64_t next_stat = t0_;
    std::int64_t next_scan = t0_ + 1000;
    std::vector<epoll_event> events(1024);
    std::cout << json{{"event", "ready"}, {"identities", ids_.size()}}.dump() << std::endl;
    while (!quit_) {
      const std::int64_t now = now_ms();
      fire_timers(now);
      start_ready();
      if (now >= next_stat) {
        print_stat(now);
        next_stat = now + 500;
      }
      if (now >= next_scan) {
        expire_handshakes(now);
        next_scan = now + 1000;
      }
      std::int64_t wait = std::min(next_stat, next_scan) - now;
      if (!timers_.empty()) wait = std::min(wait, timers_.top().when - now);
      if (!ready_.empty() && inflight_ < cfg_.inflight) wait = 0;
      const int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()),
                               static_cast<int>(std::max<std::int64_t>(0, wait)));
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == kStdin) {
          read_commands();
          continue;
        }
        on_event(static_cast<std::uint32_t>(events[i].data.u64), events[i].events);
      }
    }
    print_stat(now_ms());
    return 0;
  }

 private:
  static constexpr std::uint64_t kStdin = ~std::uint64_t{0};

  struct Timer {
    std::int64_t when;
    std::uint32_t idx;
    std::uint32_t gen;
    bool operator>(const Timer& o) const { return when > o.when; }
  };

  void read_commands() {
    char buf[4096];
    const ssize_t n = read(0, buf, sizeof buf);
    if (n <= 0) {
      quit_ = true;
      return;
    }
    cmd_.append(buf, static_cast<std::size_t>(n));
    std::size_t nl;
    while ((nl = cmd_.find('\n')) != std::string::npos) {
      const std::string line = cmd_.substr(0, nl);
      cmd_.erase(0, nl + 1);
      if (line == "quit") quit_ = true;
      if (line.rfind("target ", 0) == 0) {
        auto n_target = parse_count(line.substr(7));
        if (n_target)
          set_target(std::min<std::size_t>(static_cast<std::size_t>(*n_target), conns_.size()));
      }
    }
  }

  void set_target(std::size_t target) {
    for (std::size_t i = target_; i < target; ++i) ready_.push_back(static_cast<std::uint32_t>(i));
    if (target > target_) target_ = target;
  }

  void fire_timers(std::int64_t now) {
    while (!timers_.empty() && timers_.top().when <= now) {
      const Timer t = timers_.top();
      timers_.pop();
      // Due attempts queue with the ramp's: one process cannot run the handshakes of a whole
      // fleet at once, and attempts it could not serve in time would fail on its account.
      if (conns_[t.idx].gen == t.gen && conns_[t.idx].state == State::kIdle) {
        ready_.push_back(t.idx);
      }
    }
  }

  void start_ready() {
    while (!ready_.empty() && inflight_ < cfg_.inflight) {
      const std::uint32_t idx = ready_.front();
      ready_.pop_front();
      if (conns_[idx].state == State::kIdle) start(idx);
    }
  }

  void watch(std::uint32_t idx, bool out) {
    Conn& c = conns_[idx];
    epoll_event ev{};
    ev.events = EPOLLIN | (out ? EPOLLOUT : 0u);
    ev.data.u64 = idx;
    if (out != c.want_out) {
      epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
      c.want_out = out;
    }
  }

  void start(std::uint32_t idx) {
    Conn& c = conns_[idx];
    ++attempts_;
    ++inflight_;
    c.started_ms = now_ms();
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      fail(idx, "socket");
      return;
    }
    const int one = 1;
    setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(cfg_.sources[idx % cfg_.sources.size()]);
    if (bind(c.fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      fail(idx, "bind");
      return;
    }
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    const auto& [host, port] = cfg_.endpoints[c.ep];
    dst.sin_port = htons(port);
    inet_pton(AF_INET, host.c_str(), &dst.sin_addr);
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0 && errno != EINPROGRESS) {
      fail(idx, "connect");
      return;
    }
    c.state = State::kConnecting;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u64 = idx;
    c.want_out = true;
    epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
  }

  void on_event(std::uint32_t idx, std::uint32_t events) {
    Conn& c = conns_[idx];
    if (c.fd < 0) return;
    if (c.state == State::kConnecting) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
        fail(idx, "connect");
        return;
      }
      c.ssl = SSL_new(ctx_);
      const LoadedIdentity& id = ids_[idx];
      if (c.ssl == nullptr || SSL_set_fd(c.ssl, c.fd) != 1 ||
          SSL_use_certificate(c.ssl, id.cert) != 1 || SSL_use_PrivateKey(c.ssl, id.key) != 1) {
        ERR_clear_error();
        fail(idx, "ssl setup");
        return;
      }
      c.state = State::kTls;
    }
    if (c.state == State::kTls) {
      const TlsIo r = tls_connect(c.ssl);
      if (r != TlsIo::kOk) {
        if (r == TlsIo::kWantRead || r == TlsIo::kWantWrite) {
          watch(idx, r == TlsIo::kWantWrite);
          return;
        }
        ERR_clear_error();
        fail(idx, "tls");
        return;
      }
      c.state = State::kUpgrade;
      watch(idx, false);
      // A fixed key (RFC 6455's example) and no Sec-WebSocket-Accept check: the server is the
      // one under test, and a simulated device need not spend on a nonce and a hash.
      const auto& [host, port] = cfg_.endpoints[c.ep];
      if (!send(idx, ws::upgrade_request("/up", ws::host_header(host, port),
                                         "dGhlIHNhbXBsZSBub25jZQ==", "tether.up.v1"))) {
        return;
      }
    }
    if ((events & EPOLLOUT) != 0 && !c.out.empty()) {
      if (!flush(idx)) return;
    }
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) read_all(idx);
  }

  // Reads whatever TLS has for us and acts on it.
  void read_all(std::uint32_t idx) {
    Conn& c = conns_[idx];
    static char buf[65536];
    for (;;) {
      std::size_t got = 0;
      const TlsIo r = tls_read(c.ssl, buf, sizeof buf, got);
      if (r == TlsIo::kOk) {
        c.in.append(buf, got);
        continue;
      }
      if (r == TlsIo::kWantRead) break;
      if (r == TlsIo::kWantWrite) {
        watch(idx, true);
        break;
      }
      ERR_clear_error();
      if (!c.in.empty()) consume(idx);
      if (c.fd >= 0) lost(idx, c.state == State::kOpen ? 0 : -1);
      return;
    }
    if (!c.in.empty()) consume(idx);
  }

  void consume(std::uint32_t idx) {
    Conn& c = conns_[idx];
    if (c.state == State::kUpgrade) {
      const auto end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (c.in.size() > 8192) fail(idx, "upgrade");
        return;
      }
      if (!ws::check_upgrade_answer(std::string_view(c.in).substr(0, end), {}).empty()) {
        fail(idx, "upgrade refused");
        return;
      }
      c.in.erase(0, end + 4);
      c.state = State::kHello;
      if (!send(idx, ws_frame(ws::kOpText, hello_text(ids_[idx].device_id, idx)))) return;
    }
    while (c.fd >= 0) {
      auto fr = ws::take_frame(c.in, kMaxFrame);
      if (!fr) break;
      if (fr->opcode == ws::kOversized) {
        fail(idx, "frame");
        return;
      }
      if (fr->opcode == ws::kOpPing) {
        ++pings_;
        if (!send(idx, ws_frame(ws::kOpPong, fr->payload))) return;
      } else if (fr->opcode == ws::kOpClose) {
        int code = 1005;
        if (fr->payload.size() >= 2) {
          code = (static_cast<unsigned char>(fr->payload[0]) << 8) |
                 static_cast<unsigned char>(fr->payload[1]);
        }
        const bool restart = code == 1012 || code == 1001 ||
                             (code == 1002 && fr->payload.find("restarting") != std::string::npos);
        (void)send(idx, ws_frame(ws::kOpClose, fr->payload.substr(0, 2)));
        if (c.fd >= 0) lost(idx, restart ? 1 : (c.state == State::kOpen ? 0 : -1));
        return;
      } else if (fr->opcode == ws::kOpText) {
        const std::string type = json_string_member(fr->payload, "type");
        const std::string id = json_string_member(fr->payload, "id");
        if (type == "result" && id == "d1" && c.state == State::kHello) {
          if (fr->payload.find("\"ok\":true") == std::string::npos) {
            fail(idx, "hello refused");
            return;
          }
          opened(idx);
        } else if (type != "result" && !id.empty()) {
          // trust_update, settings, command: the agent answers every request.
          if (!send(idx, ws_frame(ws::kOpText, result_text(id)))) return;
        }
      }
    }
    if (c.fd >= 0 && c.state == State::kOpen && c.in.empty()) std::string().swap(c.in);
  }

  bool send(std::uint32_t idx, const std::string& bytes) {
    Conn& c = conns_[idx];
    c.out += bytes;
    return flush(idx);
  }

  bool flush(std::uint32_t idx) {
    Conn& c = conns_[idx];
    while (!c.out.empty()) {
      std::size_t put = 0;
      const TlsIo r = tls_write(c.ssl, c.out.data(), c.out.size(), put);
      if (r == TlsIo::kOk) {
        c.out.erase(0, put);
        continue;
      }
      if (r == TlsIo::kWantWrite || r == TlsIo::kWantRead) {
        watch(idx, true);
        return true;
      }
      ERR_clear_error();
      lost(idx, c.state == State::kOpen ? 0 : -1);
      return false;
    }
    std::string().swap(c.out);
    if (c.want_out && c.state != State::kTls) watch(idx, false);
    return true;
  }

  void opened(std::uint32_t idx) {
    Conn& c = conns_[idx];
    c.state = State::kOpen;
    c.failures = 0;
    --inflight_;
    ++connected_;
    ++opened_;
    ++connected_by_ep_[c.ep];
    ++opened_by_ep_[c.ep];
  }

  void close_fd(std::uint32_t idx) {
    Conn& c = conns_[idx];
    if (c.ssl != nullptr) SSL_free(c.ssl);
    c.ssl = nullptr;
    if (c.fd >= 0) close(c.fd);  // also leaves the epoll set
    c.fd = -1;
    std::string().swap(c.in);
    std::string().swap(c.out);
    c.want_out = false;
  }

  // kind: 1 restart close, 0 a working channel lost, -1 a failed attempt.
  void lost(std::uint32_t idx, int kind) {
    Conn& c = conns_[idx];
    if (c.state == State::kOpen) {
      --connected_;
      --connected_by_ep_[c.ep];
      ++closed_;
    } else if (c.state != State::kIdle) {
      --inflight_;
    }
    if (kind < 0) ++failures_;
    close_fd(idx);
    c.state = State::kIdle;
    if (kind != 1) c.ep = static_cast<std::uint8_t>((c.ep + 1) % cfg_.endpoints.size());
    std::int64_t delay = 0;
    if (kind == 1) {
      delay =
          static_cast<std::int64_t>(next_rand() % static_cast<std::uint32_t>(std::max<std::int64_t>(
                                                      1, cfg_.restart_spread_ms)));
    } else {
      std::int64_t bound = cfg_.backoff_base_ms;
      for (int i = 0; i < c.failures && bound < cfg_.backoff_cap_ms; ++i) bound *= 2;
      bound = std::min(bound, cfg_.backoff_cap_ms);
      delay = static_cast<std::int64_t>(
          next_rand() % static_cast<std::uint32_t>(std::max<std::int64_t>(1, bound)));
      if (kind < 0 && c.failures < 30) ++c.failures;
    }
    timers_.push(Timer{now_ms() + delay, idx, ++c.gen});
  }

  void fail(std::uint32_t idx, const char* why) {
    last_error_ = why;
    lost(idx, -1);
  }

  void expire_handshakes(std::int64_t now) {
    for (std::uint32_t i = 0; i < conns_.size(); ++i) {
      const Conn& c = conns_[i];
      if (c.state != State::kIdle && c.state != State::kOpen &&
          now - c.started_ms > cfg_.handshake_timeout_ms) {
        fail(i, "handshake timeout");
      }
    }
  }

  void print_stat(std::int64_t now) {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    std::cout << json{{"event", "stat"},
                      {"t_ms", now - t0_},
                      {"target", target_},
                      {"connected", connected_},
                      {"inflight", inflight_},
                      {"attempts", attempts_},
                      {"failures", failures_},
                      {"opened", opened_},
                      {"closed", closed_},
                      {"pings", pings_},
                      {"last_error", last_error_},
                      {"maxrss_kb", ru.ru_maxrss},
                      {"connected_by_endpoint", connected_by_ep_},
                      {"opened_by_endpoint", opened_by_ep_}}
                     .dump()
              << std::endl;
  }

  Config cfg_;
  std::vector<LoadedIdentity> ids_;
  SSL_CTX* ctx_;
  std::vector<Conn> conns_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::deque<std::uint32_t> ready_;
  std::string cmd_;
  int ep_ = -1;
  bool quit_ = false;
  std::int64_t t0_ = 0;
  std::size_t target_ = 0;
  long inflight_ = 0;
  long connected_ = 0;
  std::uint64_t attempts_ = 0, failures_ = 0, opened_ = 0, closed_ = 0, pings_ = 0;
  std::vector<long> connected_by_ep_;
  std::vector<std::uint64_t> opened_by_ep_;
  std::string last_error_;
};

int run(const Args& args) {
  Config cfg;
  auto eps = parse_endpoints(args.get("connect"));
  auto sources = parse_sources(args.get("sources", "127.0.0.2-127.0.0.9"));
  auto inflight = parse_count(args.get("inflight", "128"));
  auto spread = parse_duration_ms(args.get("restart-spread", "10s"));
  auto base = parse_duration_ms(args.get("backoff-base", "1s"));
  auto cap = parse_duration_ms(args.get("backoff-cap", "30s"));
  auto timeout = parse_duration_ms(args.get("handshake-timeout", "30s"));
  if (!eps || !sources || !inflight || *inflight < 1 || !spread || !base || !cap || !timeout ||
      *base < 1 || *cap < *base) {
    std::cerr
        << "run: bad or missing --connect HOST:PORT[,...], --sources, --inflight or a duration\n";
    return 2;
  }
  cfg.endpoints = *eps;
  cfg.sources = *sources;
  cfg.inflight = *inflight;
  cfg.restart_spread_ms = *spread;
  cfg.backoff_base_ms = *base;
  cfg.backoff_cap_ms = *cap;
  cfg.handshake_timeout_ms = *timeout;
  if (args.values.count("dry-run") != 0) {
    json src = json::array();
    for (auto s : cfg.sources) {
      in_addr a{htonl(s)};
      src.push_back(inet_ntoa(a));
    }
    json endpoints = json::array();
    for (const auto& [host, port] : cfg.endpoints) {
      endpoints.push_back(host + ":" + std::to_string(port));
    }
    std::cout << json{{"host", cfg.endpoints[0].first},
                      {"port", cfg.endpoints[0].second},
                      {"endpoints", endpoints},
                      {"sources", src},
                      {"inflight", cfg.inflight},
                      {"restart_spread_ms", cfg.restart_spread_ms},
                      {"backoff_base_ms", cfg.backoff_base_ms},
                      {"backoff_cap_ms", cfg.backoff_cap_ms},
                      {"handshake_timeout_ms", cfg.handshake_timeout_ms}}
                     .dump()
              << std::endl;
    return 0;
  }
  auto ids = load_identities(args.get("identities"), 10'000'000);
  if (ids.empty()) {
    std::cerr << "run: no identities in --identities " << args.get("identities") << "\n";
    return 2;
  }
  TlsClientConfig tls;
  tls.ca_file = args.get("ca-file");
  tls.alpn = std::string("\x08http/1.1", 9);
  // Idle connections should cost as little as possible on our side too.
  tls.release_buffers = true;
  tls.session_cache = false;
  std::string error;
  ssl::SslCtxPtr ctx = tls.ca_file.empty() ? nullptr : make_tls_client_ctx(tls, error);
  if (!ctx) {
    std::cerr << "run: cannot load --ca-file\n";
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  Fleet fleet(cfg, std::move(ids), ctx.get());
  if (!fleet.identities_ok()) {
    std::cerr << "run: an identity in --identities does not decode\n";
    return 2;
  }
  return fleet.loop();
}

}  // namespace
}  // namespace tether::bench

int main(int argc, char** argv) {
  using namespace tether::bench;
  const Args args = parse_args(std::vector<std::string>(argv + 1, argv + argc));
  if (!args.error.empty()) {
    std::cerr << "tether-bench-fleet: " << args.error << "\n";
    return 2;
  }
  if (args.values.count("self-test") != 0) return self_test();
  if (args.command == "enroll") return enroll(args);
  return run(args);
}
