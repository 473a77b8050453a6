#include "server/CtlShadow.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <memory>
#include <optional>

#include "common/Config.h"
#include "common/LwsFdWatcher.h"
#include "common/LwsLoop.h"
#include "common/UniqueFd.h"
#include "protocol/EnrollmentToken.h"
#include "server/CtlOutput.h"

namespace tether::server {
namespace {

using json = nlohmann::json;

constexpr int kExitInterrupted = 130;
constexpr std::size_t kMaxQueued = 256 * 1024;  // per direction, as the relay
constexpr std::size_t kMaxMessage = 64 * 1024;
constexpr const char* kTunnelProtocol = "tether.tunnel.v1";
constexpr const char* kViewerProtocol = "tetherctl-viewer";

volatile std::sig_atomic_t g_interrupted = 0;
lws_context* g_context = nullptr;

void on_interrupt(int) {
  g_interrupted = 1;
  if (g_context != nullptr) lws_cancel_service(g_context);
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The local address to listen on: HOST:PORT (port 0: any free port), numeric hosts only.
struct ListenAddress {
  std::string host;
  std::uint16_t port = 0;
};

Result<ListenAddress> parse_listen(const std::string& text) {
  std::string probe = text;
  const bool any_port = text.size() > 2 && text.compare(text.size() - 2, 2, ":0") == 0;
  if (any_port) probe = text.substr(0, text.size() - 1) + "1";
  auto ep = parse_endpoint(probe);
  if (!ep.ok()) return make_error(Errc::kInvalidArgument, "--listen: " + ep.error().message);
  return ListenAddress{ep->host, any_port ? std::uint16_t{0} : ep->port};
}

// A listening TCP socket (backlog 1) and the port it got.
Result<std::pair<UniqueFd, std::uint16_t>> listen_on(const ListenAddress& address) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, address.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(address.port);
    len = sizeof *v4;
  } else if (::inet_pton(AF_INET6, address.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(address.port);
    len = sizeof *v6;
  } else {
    return make_error(Errc::kInvalidArgument,
                      "--listen: \"" + address.host + "\" is not an IP address");
  }
  UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return make_error(Errc::kIo, std::string("socket: ") + std::strerror(errno));
  const int one = 1;
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd.get(), 1) != 0) {
    return make_error(Errc::kUnavailable, "cannot listen on " + address.host + ":" +
                                              std::to_string(address.port) + ": " +
                                              std::strerror(errno));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    return make_error(Errc::kIo, std::string("getsockname: ") + std::strerror(errno));
  }
  const std::uint16_t port =
      ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                       : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  return std::make_pair(std::move(fd), port);
}

// One viewer connection proxied to the viewer tunnel, on an lws loop of its own: each
// direction queues at most kMaxQueued bytes and stops reading its source above that.
class ShadowProxy {
 public:
  ShadowProxy(std::string host, std::uint16_t port, std::string path, std::string ca_pem,
              UniqueFd listener)
      : host_(std::move(host)),
        port_(port),
        path_(std::move(path)),
        ca_pem_(std::move(ca_pem)),
        listener_fd_(std::move(listener)) {}

  // Serves until both ends are gone; the exit code.
  int run() {
    protocols_[0] = {kTunnelProtocol, &ShadowProxy::tunnel_callback, 0, kMaxMessage, 0, nullptr, 0};
    protocols_[1] = {kViewerProtocol, &ShadowProxy::viewer_callback, 0, kMaxMessage, 0, nullptr, 0};
    protocols_[2] = lws_fd_watcher_protocol();
    // lws's own notices (its version banner) are noise on a command line's stderr.
    route_lws_logging(false);
    lws_context_creation_info info{};
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols_;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.client_ssl_ca_mem = ca_pem_.data();
    info.client_ssl_ca_mem_len = static_cast<unsigned int>(ca_pem_.size());
    info.user = this;
    context_.reset(lws_create_context(&info));
    if (!context_) return fail("cannot create the event loop");
    g_context = context_.get();
    struct sigaction sa {};
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    (void)std::signal(SIGPIPE, SIG_IGN);

    vhost_ = lws_get_vhost_by_name(context_.get(), "default");
    auto watcher = LwsFdWatcher::watch(vhost_, listener_fd_.get(), [this] { accept_viewer(); });
    if (!watcher.ok()) return fail(watcher.error().message);
    listener_ = std::move(watcher).value();

    host_header_ = host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_;
    host_header_ += ":" + std::to_string(port_);
    lws_client_connect_info ci{};
    ci.context = context_.get();
    ci.vhost = vhost_;
    ci.address = host_.c_str();
    ci.port = port_;
    ci.path = path_.c_str();
    ci.host = host_header_.c_str();
    ci.ssl_connection = LCCSCF_USE_SSL;
    ci.protocol = kTunnelProtocol;
    ci.local_protocol_name = kTunnelProtocol;
    ci.pwsi = &tunnel_wsi_;
    ci.userdata = this;
    if (lws_client_connect_via_info(&ci) == nullptr && tunnel_wsi_ == nullptr && !tunnel_gone_) {
      return fail("cannot connect the viewer tunnel to " + host_header_);
    }
    while (!done()) {
      if (lws_service(context_.get(), 0) < 0) break;
      if (g_interrupted && !interrupted_) interrupt();
    }
    listener_.reset();
    context_.reset();
    g_context = nullptr;
    if (interrupted_) return kExitInterrupted;
    if (!error_.empty()) return fail(error_);
    return 0;
  }

 private:
  bool done() const {
    if (!tunnel_gone_) return false;
    return viewer_wsi_ == nullptr;
  }

  void interrupt() {
    interrupted_ = true;
    listener_.reset();
    if (viewer_wsi_ != nullptr) {
      viewer_closing_ = true;
      lws_callback_on_writable(viewer_wsi_);
    }
    close_tunnel();
  }

  void close_tunnel() {
    if (tunnel_wsi_ == nullptr) {
      tunnel_gone_ = true;
      return;
    }
    tunnel_closing_ = true;
    if (to_tunnel_.empty() || !tunnel_established_) to_tunnel_.clear();
    if (!tunnel_established_) {
      lws_set_timeout(tunnel_wsi_, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
      return;
    }
    lws_callback_on_writable(tunnel_wsi_);
    lws_set_timeout(tunnel_wsi_, PENDING_TIMEOUT_USER_OK, 5);
  }

  void accept_viewer() {
    const int fd = ::accept4(listener_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    if (viewer_wsi_ != nullptr || viewer_seen_ || tunnel_gone_) {
      ::close(fd);  // one viewer only
      return;
    }
    lws_adopt_desc_t desc{};
    desc.vh = vhost_;
    desc.type = LWS_ADOPT_SOCKET;  // raw: no HTTP, no TLS
    desc.fd.sockfd = fd;
    desc.vh_prot_name = kViewerProtocol;
    desc.opaque = this;
    viewer_wsi_ = lws_adopt_descriptor_vhost_via_info(&desc);
    if (viewer_wsi_ == nullptr) {
      error_ = "cannot take the viewer's connection";
      close_tunnel();
      return;
    }
    viewer_seen_ = true;
    // One viewer: stop listening.
    listener_.reset();
    listener_fd_.reset();
    (void)std::fprintf(stderr, "tetherctl: a viewer connected\n");
    if (!to_viewer_.empty()) lws_callback_on_writable(viewer_wsi_);
  }

  static ShadowProxy* self_of(lws* wsi) {
    return static_cast<ShadowProxy*>(lws_context_user(lws_get_context(wsi)));
  }

  static int tunnel_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                             std::size_t len) {
    ShadowProxy* self = self_of(wsi);
    if (self == nullptr) return 0;
    try {
      return self->on_tunnel(wsi, reason, in, len);
    } catch (...) {
      return -1;
    }
    (void)user;
  }

  static int viewer_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                             std::size_t len) {
    ShadowProxy* self = self_of(wsi);
    if (self == nullptr) return 0;
    try {
      return self->on_viewer(wsi, reason, in, len);
    } catch (...) {
      return -1;
    }
    (void)user;
  }

  int on_tunnel(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len) {
    switch (reason) {
      case LWS_CALLBACK_CLIENT_ESTABLISHED:
        tunnel_established_ = true;
        if (tunnel_closing_ || !to_tunnel_.empty()) lws_callback_on_writable(wsi);
        return 0;

      case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        error_ = std::string("the viewer tunnel failed: ") +
                 (in ? std::string(static_cast<const char*>(in), len) : "connection error");
        tunnel_wsi_ = nullptr;
        tunnel_gone_ = true;
        drop_viewer();
        return 0;

      case LWS_CALLBACK_CLIENT_RECEIVE: {
        if (!lws_frame_is_binary(wsi)) return 0;
        to_viewer_.emplace_back(static_cast<const char*>(in), len);
        to_viewer_bytes_ += len;
        if (viewer_wsi_ != nullptr) lws_callback_on_writable(viewer_wsi_);
        if (to_viewer_bytes_ > kMaxQueued && !tunnel_paused_) {
          tunnel_paused_ = true;
          lws_rx_flow_control(wsi, 0);
        }
        return 0;
      }

      case LWS_CALLBACK_CLIENT_WRITEABLE: {
        if (!to_tunnel_.empty()) {
          std::string message = std::move(to_tunnel_.front());
          to_tunnel_.pop_front();
          to_tunnel_bytes_ -= message.size();
          std::vector<unsigned char> buf(LWS_PRE + message.size());
          std::memcpy(buf.data() + LWS_PRE, message.data(), message.size());
          if (lws_write(wsi, buf.data() + LWS_PRE, message.size(), LWS_WRITE_BINARY) <
              static_cast<int>(message.size())) {
            return -1;
          }
          if (viewer_paused_ && to_tunnel_bytes_ < kMaxQueued / 2 && viewer_wsi_ != nullptr) {
            viewer_paused_ = false;
            lws_rx_flow_control(viewer_wsi_, 1);
          }
          if (!to_tunnel_.empty() || tunnel_closing_) lws_callback_on_writable(wsi);
          return 0;
        }
        if (tunnel_closing_) {
          static const char kReason[] = "viewer left";
          lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL,
                           reinterpret_cast<unsigned char*>(const_cast<char*>(kReason)),
                           sizeof kReason - 1);
          return -1;
        }
        return 0;
      }

      case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2 && in != nullptr) {
          const auto* b = static_cast<const unsigned char*>(in);
          close_code_ = (b[0] << 8) | b[1];
          close_reason_.assign(static_cast<const char*>(in) + 2, len - 2);
        }
        return 0;

      case LWS_CALLBACK_CLIENT_CLOSED:
        tunnel_wsi_ = nullptr;
        tunnel_gone_ = true;
        if (!tunnel_closing_ && !interrupted_) {
          // The session ended from the other side: tell why, let the viewer go.
          error_ = "the session ended: " +
                   (close_reason_.empty() ? std::string("the tunnel closed") : close_reason_) +
                   (close_code_ ? " (" + std::to_string(close_code_) + ")" : "");
          listener_.reset();
          if (viewer_wsi_ != nullptr) {
            viewer_closing_ = true;
            if (viewer_paused_) lws_rx_flow_control(viewer_wsi_, 1);
            lws_callback_on_writable(viewer_wsi_);
          }
        }
        return 0;

      default: break;
    }
    return 0;
  }

  void drop_viewer() {
    listener_.reset();
    if (viewer_wsi_ != nullptr) {
      viewer_closing_ = true;
      lws_callback_on_writable(viewer_wsi_);
    }
  }

  int on_viewer(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len) {
    switch (reason) {
      case LWS_CALLBACK_RAW_RX: {
        if (tunnel_gone_ || tunnel_closing_) return 0;
        auto* p = static_cast<const char*>(in);
        while (len > 0) {
          const std::size_t n = std::min(len, kMaxMessage);
          to_tunnel_.emplace_back(p, n);
          to_tunnel_bytes_ += n;
          p += n;
          len -= n;
        }
        if (tunnel_wsi_ != nullptr && tunnel_established_) lws_callback_on_writable(tunnel_wsi_);
        if (to_tunnel_bytes_ > kMaxQueued && !viewer_paused_) {
          viewer_paused_ = true;
          lws_rx_flow_control(wsi, 0);
        }
        return 0;
      }

      case LWS_CALLBACK_RAW_WRITEABLE: {
        if (!to_viewer_.empty()) {
          std::string chunk = std::move(to_viewer_.front());
          to_viewer_.pop_front();
          to_viewer_bytes_ -= chunk.size();
          std::vector<unsigned char> buf(LWS_PRE + chunk.size());
          std::memcpy(buf.data() + LWS_PRE, chunk.data(), chunk.size());
          if (lws_write(wsi, buf.data() + LWS_PRE, chunk.size(), LWS_WRITE_RAW) <
              static_cast<int>(chunk.size())) {
            return -1;
          }
          if (tunnel_paused_ && to_viewer_bytes_ < kMaxQueued / 2 && tunnel_wsi_ != nullptr) {
            tunnel_paused_ = false;
            lws_rx_flow_control(tunnel_wsi_, 1);
          }
          if (!to_viewer_.empty() || viewer_closing_) lws_callback_on_writable(wsi);
          return 0;
        }
        if (viewer_closing_) return -1;
        return 0;
      }

      case LWS_CALLBACK_RAW_CLOSE:
        if (viewer_wsi_ == wsi) viewer_wsi_ = nullptr;
        if (!tunnel_gone_) {
          (void)std::fprintf(stderr, "tetherctl: the viewer left; ending the session\n");
          close_tunnel();
        }
        return 0;

      default: break;
    }
    return 0;
  }

  std::string host_;
  std::uint16_t port_;
  std::string path_;
  std::string ca_pem_;
  std::string host_header_;
  UniqueFd listener_fd_;
  lws_protocols protocols_[4]{};
  LwsContextPtr context_;
  lws_vhost* vhost_ = nullptr;
  std::unique_ptr<LwsFdWatcher> listener_;
  lws* tunnel_wsi_ = nullptr;
  lws* viewer_wsi_ = nullptr;
  bool tunnel_established_ = false;
  bool tunnel_closing_ = false;
  bool tunnel_gone_ = false;
  bool tunnel_paused_ = false;
  bool viewer_seen_ = false;
  bool viewer_closing_ = false;
  bool viewer_paused_ = false;
  bool interrupted_ = false;
  std::deque<std::string> to_viewer_;
  std::size_t to_viewer_bytes_ = 0;
  std::deque<std::string> to_tunnel_;
  std::size_t to_tunnel_bytes_ = 0;
  int close_code_ = 0;
  std::string close_reason_;
  std::string error_;
};

int cmd_shadow(const CtlClient& client, const ParsedArgs& args,
               const std::function<Result<std::string>(const std::string&)>& resolve) {
  const auto& pos = args.positional();
  if (pos.size() != 2) {
    return fail(
        "usage: tetherctl shadow DEVICE [--listen ADDR:PORT] [--view-only] "
        "[--monitor NAME] [--json]",
        kExitUsage);
  }
  auto listen = parse_listen(args.value("listen").value_or("127.0.0.1:0"));
  if (!listen.ok()) return fail(listen.error().message, kExitUsage);
  // Listen first: a port that is taken should not cost the device's user a prompt.
  auto listening = listen_on(*listen);
  if (!listening.ok()) return fail(listening.error().message);
  auto [listen_fd, port] = std::move(listening).value();

  auto id = resolve(pos[1]);
  if (!id.ok()) return fail(id.error().message);
  json body = {{"viewer", "external"}, {"view_only", args.has("view-only")}};
  if (auto monitor = args.value("monitor")) body["monitor"] = *monitor;
  auto response =
      client.exchange("POST", "/api/v1/devices/" + *id + "/shadow", body, kCtlDeviceCallTimeout);
  if (!response.ok()) return fail(response.error().message);
  if (response->status != 201) {
    std::string code = "error";
    if (response->body.contains("error") && response->body["error"].is_object()) {
      code = str(response->body["error"], "code");
    }
    return fail("shadowing refused: " + code + ": " + response->error_message());
  }
  const json& created = response->body;
  const std::string url = str(created, "viewer_url");
  const auto scheme_end = url.find("://");
  const auto path_start =
      scheme_end == std::string::npos ? std::string::npos : url.find('/', scheme_end + 3);
  if (path_start == std::string::npos || url.compare(path_start, 15, "/tunnel/viewer/") != 0) {
    return fail("the server gave no usable viewer_url: \"" + url.substr(0, 200) + "\"");
  }
  const std::string host_text =
      listen->host.find(':') != std::string::npos ? "[" + listen->host + "]" : listen->host;
  const std::string target = listen->host + "::" + std::to_string(port);
  if (args.has("json")) {
    json out = created;
    out.erase("viewer_url");  // its token is a credential; it is used here
    out["listen"] = host_text + ":" + std::to_string(port);
    out["vncviewer"] = "vncviewer " + target;
    out["vncsnapshot"] = "vncsnapshot " + target + " snap.jpg";
    print_json(out);
  } else {
    std::printf("shadowing %s: session %s (%s, consent %s)\n", id->c_str(),
                str(created, "session").c_str(),
                created.value("view_only", false) ? "view only" : "full control",
                str(created, "consent").c_str());
    std::printf("listening on %s:%u for one VNC viewer; run one of:\n", host_text.c_str(),
                static_cast<unsigned>(port));
    std::printf("  vncviewer %s\n", target.c_str());
    std::printf("  vncsnapshot %s snap.jpg\n", target.c_str());
  }
  (void)std::fflush(stdout);
  // The viewer end is the server's, or the gateway's when the device is behind one; either
  // way its certificate must chain to the installation CA (--ca-file), so the answer cannot
  // send this tool anywhere else.
  std::string tunnel_host = client.host();
  std::uint16_t tunnel_port = client.port();
  if (auto origin = protocol::parse_server_url(url.substr(0, path_start)); origin.ok()) {
    tunnel_host = origin->host;
    tunnel_port = origin->port;
  }
  ShadowProxy proxy(tunnel_host, tunnel_port, url.substr(path_start), client.ca_pem(),
                    std::move(listen_fd));
  return proxy.run();
}

std::string time_text(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return "-";
  const std::time_t t = it->get<std::int64_t>();
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string duration_text(const json& row) {
  auto s = row.find("started_at");
  auto e = row.find("ended_at");
  if (s == row.end() || !s->is_number_integer()) return "-";
  if (e == row.end() || !e->is_number_integer()) return "running";
  const std::int64_t d = e->get<std::int64_t>() - s->get<std::int64_t>();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(d / 60),
                static_cast<long long>(d % 60));
  return buf;
}

std::string bytes_text(const json& row, const char* key) {
  auto it = row.find(key);
  const std::int64_t n = it != row.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
  char buf[32];
  if (n >= 10 * 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%lld MiB", static_cast<long long>(n >> 20));
  } else if (n >= 10 * 1024) {
    std::snprintf(buf, sizeof buf, "%lld KiB", static_cast<long long>(n >> 10));
  } else {
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(n));
  }
  return buf;
}

int cmd_audit(const CtlClient& client, const ParsedArgs& args,
              const std::function<Result<std::string>(const std::string&)>& resolve) {
  if (args.positional().size() != 1) {
    return fail("usage: tetherctl audit [--device ID] [--limit N] [--json]", kExitUsage);
  }
  std::string query;
  if (auto device = args.value("device")) {
    auto id = resolve(*device);
    if (!id.ok()) return fail(id.error().message);
    query = "device=" + *id;
  }
  if (auto limit = args.value("limit")) {
    const bool digits =
        !limit->empty() && limit->size() <= 4 &&
        std::all_of(limit->begin(), limit->end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits) return fail("--limit must be a number from 1 to 1000", kExitUsage);
    query += (query.empty() ? "" : "&") + std::string("limit=") + *limit;
  }
  auto rows = client.call("GET", "/api/v1/audit" + (query.empty() ? "" : "?" + query));
  if (!rows.ok()) return fail(rows.error().message);
  if (args.has("json")) {
    print_json(*rows);
    return 0;
  }
  std::vector<std::vector<std::string>> table = {{"REQUESTED (UTC)", "SESSION", "DEVICE", "ADMIN",
                                                  "VIEWER", "MODE", "DURATION", "TO VIEWER",
                                                  "TO DEVICE", "END"}};
  const auto& sessions = (*rows)["sessions"];
  for (const auto& row : sessions) {
    std::string end = str(row, "end_reason");
    if (end.empty()) end = "(running)";
    const std::string message = str(row, "end_message");
    if (!message.empty()) end += ": " + message;
    std::string device = str(row, "hostname");
    if (device.empty()) device = str(row, "device").substr(0, 12);
    table.push_back({time_text(row, "requested_at"), str(row, "session"), device, str(row, "admin"),
                     str(row, "viewer"), row.value("view_only", false) ? "view" : "control",
                     duration_text(row), bytes_text(row, "bytes_to_viewer"),
                     bytes_text(row, "bytes_to_device"), end});
  }
  std::vector<std::size_t> widths(table[0].size(), 0);
  for (const auto& r : table) {
    for (std::size_t i = 0; i < r.size(); ++i) widths[i] = std::max(widths[i], r[i].size());
  }
  for (const auto& r : table) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(widths[i] - r[i].size() + 2, ' ');
    }
    std::printf("%s\n", terminal_text(line).c_str());
  }
  if (sessions.empty()) (void)std::fprintf(stderr, "tetherctl: no shadowing sessions recorded\n");
  return 0;
}

}  // namespace

bool is_shadow_command(const std::vector<std::string>& positional) {
  return !positional.empty() && (positional[0] == "shadow" || positional[0] == "audit");
}

int run_shadow_command(const CtlClient& client, const ParsedArgs& args,
                       const std::function<Result<std::string>(const std::string&)>& resolve) {
  if (args.positional()[0] == "audit") return cmd_audit(client, args, resolve);
  return cmd_shadow(client, args, resolve);
}

}  // namespace tether::server
