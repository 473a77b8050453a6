// tether-fleet-sim: many simulated agents in one process, for the reconnect-storm test and
// the fleet benchmark. Each simulated device has its own key and certificate (enrolled over
// the real REST API), its own TLS context and its own UP channel, driven by the agent's own
// UpClient and AgentSession on one libwebsockets loop.
//
//   tether-fleet-sim --server wss://127.0.0.1:8443 --admin-token FILE --ca-file FILE
//                    --count N --state DIR [--restart-spread 10s] [--report FILE]
//
// Enrolled identities are kept in --state so that a second run reuses them. The report
// (JSON, rewritten every second and at exit) holds how many are connected and the unix-ms
// time of every connection attempt.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <vector>

#include "agent/AgentSession.h"
#include "agent/DeviceIdentity.h"
#include "agent/UpClient.h"
#include "agent/UpTlsContext.h"
#include "common/CommandLine.h"
#include "common/Duration.h"
#include "common/FileIo.h"
#include "common/Log.h"
#include "common/LwsLoop.h"
#include "platform/HttpsClient.h"
#include "platform/Pki.h"
#include "protocol/EnrollmentToken.h"
#include "protocol/LimitedJsonParser.h"
#include "protocol/UpMessage.h"

namespace tether::agent {
namespace {

using json = nlohmann::json;

std::atomic<bool> g_stop{false};
std::atomic<lws_context*> g_ctx{nullptr};

extern "C" void on_signal(int) {
  g_stop = true;
  if (lws_context* c = g_ctx.load()) lws_cancel_service(c);
}

lws_protocols sim_protocols[] = {
    {protocol::kUpSubprotocol, &UpConnection::callback, 0, 0, 0, nullptr, 0},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};

class SimDevice final : public SessionHost {
 public:
  SimDevice(DeviceIdentity identity, std::vector<std::string> trust)
      : identity_(std::move(identity)), trust_(std::move(trust)) {}

  Status attach(lws_context* ctx, const UpClientOptions& options) {
    TETHER_ASSIGN_OR_RETURN(tls_,
                            UpTlsContext::create(identity_.key(), identity_.certificate(), trust_));
    lws_context_creation_info vinfo{};
    vinfo.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    vinfo.port = CONTEXT_PORT_NO_LISTEN;
    vinfo.vhost_name = "sim";
    vinfo.protocols = sim_protocols;
    vinfo.provided_client_ssl_ctx = tls_->get();
    lws_vhost* vh = lws_create_vhost(ctx, &vinfo);
    if (vh == nullptr) return make_error(Errc::kInternal, "cannot create a vhost");
    client = std::make_unique<UpClient>(ctx, vh, options);
    session_ = std::make_unique<AgentSession>(ctx, *client, *this, SessionOptions{});
    client->set_handler(*session_);
    return {};
  }

  const std::string& device_id() const override { return identity_.device_id(); }
  EVP_PKEY* device_key() const override { return identity_.key(); }
  X509* device_certificate() const override { return identity_.certificate(); }
  Status install_certificate(ssl::X509Ptr cert) override {
    X509* raw = cert.get();
    return tls_->use_certificate(raw);
  }
  const std::vector<std::string>& trusted_cas() const override { return trust_; }
  Status set_trusted_cas(std::vector<std::string> fps) override {
    trust_ = std::move(fps);
    tls_->set_pinned(trust_);
    return {};
  }
  std::string channel_ca() const override { return tls_->verified_ca(); }
  void on_hello_ack(const protocol::HelloAck&) override {}

  std::unique_ptr<UpClient> client;

 private:
  DeviceIdentity identity_;
  std::vector<std::string> trust_;
  std::unique_ptr<UpTlsContext> tls_;
  std::unique_ptr<AgentSession> session_;
};

// Enrolls one simulated device over the REST API (admin token makes the enrollment token).
Result<DeviceIdentity> enroll_one(const StatePaths& paths, const protocol::ServerUrl& url,
                                  const TlsTrust& admin_trust, const std::string& admin_token,
                                  const std::string& ca_fp) {
  HttpsRequest create;
  create.method = "POST";
  create.path = "/api/v1/enroll-tokens";
  create.headers = {{"Authorization", "Bearer " + admin_token},
                    {"Content-Type", "application/json"}};
  create.body = "{}";
  TETHER_ASSIGN_OR_RETURN(auto created, https_request(url.host, url.port, admin_trust, create));
  if (created.status != 201) {
    return make_error(Errc::kUnavailable, "token creation: HTTP " + std::to_string(created.status) +
                                              " " + created.body);
  }
  TETHER_ASSIGN_OR_RETURN(auto doc, protocol::parse_limited_json(created.body, {}));
  const std::string token_text = doc.value("token", "");
  TETHER_ASSIGN_OR_RETURN(auto token, protocol::parse_enrollment_token(token_text));

  TETHER_ASSIGN_OR_RETURN(DeviceIdentity identity, DeviceIdentity::generate());
  TETHER_ASSIGN_OR_RETURN(std::string csr, pki::make_csr_pem(identity.key(), identity.device_id()));
  HttpsRequest enroll;
  enroll.method = "POST";
  enroll.path = "/api/v1/enroll";
  enroll.headers = {{"Content-Type", "application/json"}};
  enroll.body = json{{"secret", token.secret},
                     {"csr_pem", csr},
                     {"hostname", "sim-" + identity.device_id().substr(0, 8)},
                     {"macs", json::array()}}
                    .dump();
  TlsTrust pin;
  pin.pinned_ca_fingerprint = ca_fp;
  TETHER_ASSIGN_OR_RETURN(auto enrolled, https_request(url.host, url.port, pin, enroll));
  if (enrolled.status != 201) {
    return make_error(Errc::kUnavailable,
                      "enroll: HTTP " + std::to_string(enrolled.status) + " " + enrolled.body);
  }
  TETHER_ASSIGN_OR_RETURN(auto answer, protocol::parse_limited_json(enrolled.body, {}));
  TETHER_ASSIGN_OR_RETURN(auto cert,
                          pki::certificate_from_pem(answer.value("certificate_pem", "")));
  TETHER_TRY(identity.store(paths, std::move(cert)));
  TETHER_TRY(save_trust(paths, {ca_fp}));
  return identity;
}

int run(int argc, const char* const* argv) {
  const std::vector<OptionSpec> specs = {
      {"server", 0, true, "URL", "wss://HOST:PORT"},
      {"connect", 0, true, "URL",
       "wss://HOST:PORT the agents connect to (a gateway); default --server"},
      {"admin-token", 0, true, "FILE", "the server's admin.token"},
      {"ca-file", 0, true, "FILE", "the server's ca.crt"},
      {"count", 0, true, "N", "simulated devices"},
      {"state", 0, true, "DIR", "where enrolled identities are kept"},
      {"restart-spread", 0, true, "DURATION", "agents' connection.restart_spread (30s)"},
      {"backoff-base", 0, true, "DURATION", "agents' connection.backoff_base (1s)"},
      {"report", 0, true, "FILE", "JSON report, rewritten every second"},
  };
  auto args = parse_command_line(argc, argv, specs);
  if (!args.ok()) {
    std::cerr << args.error().message << "\n" << format_options_help(specs);
    return 2;
  }
  auto url = protocol::parse_server_url(args->value("server").value_or(""));
  if (!url.ok()) {
    std::cerr << url.error().message << "\n";
    return 2;
  }
  auto connect_url = protocol::parse_server_url(args->value("connect").value_or(url->to_string()));
  if (!connect_url.ok()) {
    std::cerr << "--connect: " << connect_url.error().message << "\n";
    return 2;
  }
  const int count = std::stoi(args->value("count").value_or("10"));
  const std::string state = args->value("state").value_or("/tmp/tether-fleet-sim");
  const std::string report_path = args->value("report").value_or(state + "/report.json");
  auto token = read_file(args->value("admin-token").value_or(""));
  auto ca_pem = read_file(args->value("ca-file").value_or(""));
  if (!token.ok() || !ca_pem.ok()) {
    std::cerr << "need --admin-token and --ca-file\n";
    return 2;
  }
  while (!token->empty() && (token->back() == '\n' || token->back() == ' ')) token->pop_back();
  auto ca = pki::certificate_from_pem(*ca_pem);
  if (!ca.ok()) {
    std::cerr << "--ca-file: " << ca.error().message << "\n";
    return 2;
  }
  const std::string ca_fp = *pki::certificate_fingerprint(ca->get());
  TlsTrust admin_trust;
  admin_trust.ca_pem = *ca_pem;

  UpClientOptions options;
  options.restart_spread = *parse_duration(args->value("restart-spread").value_or("30s"));
  options.backoff_base = *parse_duration(args->value("backoff-base").value_or("1s"));

  if (auto made = ensure_directory(state, 0700); !made.ok()) {
    std::cerr << made.error().message << "\n";
    return 1;
  }
  std::vector<std::unique_ptr<SimDevice>> devices;
  for (int i = 0; i < count; ++i) {
    const StatePaths paths(state + "/dev" + std::to_string(i));
    auto identity = DeviceIdentity::load(paths);
    if (!identity.ok()) identity = enroll_one(paths, *url, admin_trust, *token, ca_fp);
    if (!identity.ok()) {
      std::cerr << "device " << i << ": " << identity.error().message << "\n";
      return 1;
    }
    devices.push_back(
        std::make_unique<SimDevice>(std::move(identity).value(), std::vector<std::string>{ca_fp}));
  }
  log::info("enrolled " + std::to_string(count) + " simulated devices");

  lws_context_creation_info info{};
  info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.fd_limit_per_thread = static_cast<unsigned>(count * 2 + 64);
  LwsContextPtr ctx(lws_create_context(&info));
  if (!ctx) return 1;
  g_ctx = ctx.get();
  route_lws_logging(false);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::vector<std::int64_t> attempts;
  for (auto& d : devices) {
    auto attached = d->attach(ctx.get(), options);
    if (!attached.ok()) {
      std::cerr << attached.error().message << "\n";
      return 1;
    }
    d->client->on_attempt = [&attempts](std::int64_t ms) { attempts.push_back(ms); };
    d->client->start(*connect_url);
  }

  auto write_report = [&] {
    int connected = 0;
    for (const auto& d : devices) connected += d->client->ready() ? 1 : 0;
    const json doc = {{"count", count}, {"connected", connected}, {"attempts", attempts}};
    (void)write_file_atomic(report_path, doc.dump(), 0644);
  };
  std::unique_ptr<LwsTimer> ticker;
  ticker = std::make_unique<LwsTimer>(ctx.get(), [&] {
    write_report();
    ticker->schedule(std::chrono::seconds(1));
  });
  ticker->schedule(std::chrono::milliseconds(100));

  while (!g_stop) {
    if (lws_service(ctx.get(), 0) < 0) break;
  }
  write_report();
  ticker.reset();
  // Clients first (they detach from their wsi), then the loop; the TLS contexts are
  // reference-counted by any SSL objects still alive.
  devices.clear();
  g_ctx = nullptr;
  ctx.reset();
  return 0;
}

}  // namespace
}  // namespace tether::agent

int main(int argc, char** argv) {
  return tether::agent::run(argc, argv);
}
