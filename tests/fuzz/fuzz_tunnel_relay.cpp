// The shadowing tunnel as the relay sees it (docs/protocol.md §5): raw bytes from a viewer —
// an HTTP upgrade to /tunnel/viewer/SESSION?token=… and then arbitrary WebSocket frames —
// go into a real libwebsockets server context, on one end of a socketpair adopted as an
// HTTP connection, and from there through our TunnelRelay (the admission at the upgrade,
// the tunnel protocol's callback, writes and closes) into a real TunnelSplice.
//
// What is not the production path, and why: HttpsServer's vhost is TLS only, so the vhost
// here is plain, with the same protocols, buffer sizes and (trivial) HTTP glue as
// HttpsServer's (confirm_upgrade at LWS_CALLBACK_HTTP_CONFIRM_UPGRADE, the relay's
// on_callback for both tunnel subprotocols); HttpsServer::tunnel_callback only adds the
// keepalive. Without TLS there is no client certificate, so a device end is always refused
// (the refusal path is fuzzed); the session's device end is simulated behind the
// TunnelSessions interface (ShadowService's role): it joins at once and echoes what it
// receives, so bytes flow both ways through the relay's read and write paths.
//
// The first byte picks: bit 0 a small queue limit (flow control: the viewer is paused and
// resumed), bit 1 a slow device (it reads every fourth turn), bit 2 the device leaves after
// a few turns (the viewer is flushed and closed), bit 3 the viewer's token is already used.
// Checked: every piece the relay receives fits its buffer, every message it writes the
// splice's limit, and once the connection is gone the relay holds no end and the session
// saw the viewer's close.
#include <fcntl.h>
#include <libwebsockets.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/Log.h"
#include "server/ShadowService.h"
#include "server/TunnelRelay.h"
#include "server/TunnelSplice.h"

using namespace tether;
using namespace tether::server;

namespace {

constexpr const char* kSession = "s1";
constexpr std::string_view kViewerToken = "vt";
constexpr std::size_t kRxBuffer = 64 * 1024;  // HttpsServer's tunnel rx_buffer_size

class Harness final : public TunnelSessions, public TunnelEndIo {
 public:
  void reset(unsigned flags) {
    TunnelLimits limits;
    if ((flags & 1) != 0) limits.max_queued = 64;
    limits_ = limits;
    splice_ = std::make_unique<TunnelSplice>(*this, limits);
    slow_device_ = (flags & 2) != 0;
    device_leaves_ = (flags & 4) != 0;
    token_used_ = (flags & 8) != 0;
    device_writable_ = false;
    device_receiving_ = true;
    held_.clear();
    viewer_closed_ = false;
    splice_->attach(TunnelEnd::kDevice);
  }

  // ---- TunnelSessions (ShadowService's part) ----
  void set_transport(TunnelTransport* transport) override { transport_ = transport; }
  bool viewer_origin_allowed(const std::optional<std::string>& origin,
                             const std::string& host) const override {
    return tunnel_origin_allowed(origin, host);
  }
  Status check_join(const std::string& session_id, TunnelEnd end, std::string_view token,
                    const std::string& device_id) const override {
    if (session_id != kSession) return make_error(Errc::kNotFound, "no such session");
    // Without TLS the relay can never name a device: it must have refused the end already.
    if (end == TunnelEnd::kDevice || !device_id.empty()) std::abort();
    if (token != kViewerToken || token_used_) {
      return make_error(Errc::kUnauthenticated, "bad token");
    }
    return {};
  }
  Status join(const std::string& session_id, TunnelEnd end, std::string_view token,
              const std::string& device_id) override {
    TETHER_TRY(check_join(session_id, end, token, device_id));
    token_used_ = true;
    return {};
  }
  void opened(const std::string& session_id, TunnelEnd end) override {
    if (session_id != kSession || end != TunnelEnd::kViewer) std::abort();
    splice_->attach(end);
  }
  void received(const std::string& session_id, TunnelEnd from, std::string_view bytes) override {
    if (session_id != kSession || bytes.size() > kRxBuffer) std::abort();
    splice_->received(from, bytes);
  }
  void received_text(const std::string& session_id, TunnelEnd from) override {
    if (session_id != kSession) std::abort();
    splice_->received_text(from);
  }
  TunnelSplice::Action take(const std::string& session_id, TunnelEnd end) override {
    if (session_id != kSession) std::abort();
    auto action = splice_->take(end);
    if (auto* write = std::get_if<TunnelSplice::Write>(&action)) {
      if (write->data.size() > limits_.max_message) std::abort();
    }
    return action;
  }
  void closed(const std::string& session_id, TunnelEnd end) override {
    if (session_id != kSession || end != TunnelEnd::kViewer) std::abort();
    viewer_closed_ = true;
    splice_->detach(end);
  }

  // ---- TunnelEndIo (the splice's requests) ----
  void request_writable(TunnelEnd end) override {
    if (end == TunnelEnd::kDevice) {
      device_writable_ = true;
    } else if (transport_ != nullptr) {
      transport_->request_writable(kSession, end);
    }
  }
  void set_receiving(TunnelEnd end, bool receiving) override {
    if (end == TunnelEnd::kDevice) {
      device_receiving_ = receiving;
    } else if (transport_ != nullptr) {
      transport_->set_receiving(kSession, end, receiving);
    }
  }

  // One turn of the simulated device: reads what the splice has for it and echoes it.
  void device_turn(std::size_t turn) {
    if (splice_->gone(TunnelEnd::kDevice)) return;
    if (device_leaves_ && turn == 6) {
      splice_->detach(TunnelEnd::kDevice);
      return;
    }
    if (device_receiving_ && !held_.empty()) {
      std::string bytes = std::move(held_);
      held_.clear();
      splice_->received(TunnelEnd::kDevice, bytes);
    }
    if (!device_writable_ || (slow_device_ && turn % 4 != 0)) return;
    device_writable_ = false;
    for (;;) {
      auto action = splice_->take(TunnelEnd::kDevice);
      if (auto* write = std::get_if<TunnelSplice::Write>(&action)) {
        if (device_receiving_) {
          splice_->received(TunnelEnd::kDevice, write->data);
        } else if (held_.size() < 1024 * 1024) {
          held_ += write->data;
        }
        continue;
      }
      if (std::holds_alternative<TunnelSplice::Close>(action)) {
        splice_->detach(TunnelEnd::kDevice);
      }
      break;
    }
  }

  [[nodiscard]] bool viewer_attached() const { return splice_->attached(TunnelEnd::kViewer); }
  [[nodiscard]] bool viewer_closed() const { return viewer_closed_; }

 private:
  TunnelTransport* transport_ = nullptr;
  std::unique_ptr<TunnelSplice> splice_;
  TunnelLimits limits_;
  bool slow_device_ = false;
  bool device_leaves_ = false;
  bool token_used_ = false;
  bool device_writable_ = false;
  bool device_receiving_ = true;
  bool viewer_closed_ = false;
  std::string held_;
};

struct Fixture;
Fixture* g_fixture = nullptr;

struct Fixture {
  Fixture() : relay(harness) {
    g_fixture = this;  // lws calls the protocols while the context is created
    log::set_level(log::Level::kError);
    lws_set_log_level(0, nullptr);
    protocols[0].name = "http";
    protocols[0].callback = &Fixture::http_callback;
    for (std::size_t i : {std::size_t{1}, std::size_t{2}}) {
      protocols[i].name = i == 1 ? kTunnelSubprotocol : kBinarySubprotocol;
      protocols[i].callback = &Fixture::tunnel_callback;
      protocols[i].per_session_data_size = sizeof(TunnelRelay::EndData);
      protocols[i].rx_buffer_size = kRxBuffer;
    }
    lws_context_creation_info info{};
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = protocols;
    info.retry_and_idle_policy = &retry;  // all zero: no lws keepalive, as HttpsServer
    info.max_http_header_data = 4096;
    info.pt_serv_buf_size = 64 * 1024 + LWS_PRE;
    info.vhost_name = "tether";
    context = lws_create_context(&info);
    if (context == nullptr) std::abort();
    vhost = lws_get_vhost_by_name(context, "tether");
    if (vhost == nullptr) std::abort();
  }

  static void note_destroyed(lws* wsi, lws_callback_reasons reason) {
    if (reason == LWS_CALLBACK_WSI_DESTROY && wsi == g_fixture->current) {
      g_fixture->current = nullptr;
    }
  }
  static int http_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                           std::size_t len) {
    note_destroyed(wsi, reason);
    switch (reason) {
      case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: return g_fixture->relay.confirm_upgrade(wsi);
      case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: return 1;
      case LWS_CALLBACK_HTTP:
        if (lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, nullptr) != 0) return -1;
        return lws_http_transaction_completed(wsi);
      default: return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
  }
  static int tunnel_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                             std::size_t len) {
    note_destroyed(wsi, reason);
    return g_fixture->relay.on_callback(wsi, reason, user, in, len);
  }

  Harness harness;
  TunnelRelay relay;
  lws_protocols protocols[4]{};
  lws_retry_bo_t retry{};
  lws_context* context = nullptr;
  lws_vhost* vhost = nullptr;
  lws* current = nullptr;  // the adopted connection until lws destroys it
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Never destroyed: lws_context_destroy at exit would run callbacks into a half-gone fixture.
  static Fixture* fixture = new Fixture;
  if (size == 0) return 0;
  fixture->harness.reset(data[0]);

  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  const int viewer = fds[0];
  const int buffer = 4 * 1024 * 1024;
  ::setsockopt(viewer, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer);
  ::setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
  ::fcntl(viewer, F_SETFL, O_NONBLOCK);
  std::size_t written = 0;
  while (written < size - 1) {
    const ssize_t n = ::send(viewer, data + 1 + written, size - 1 - written, 0);
    if (n <= 0) break;
    written += static_cast<std::size_t>(n);
  }

  lws_sock_file_fd_type fd{};
  fd.sockfd = fds[1];
  fixture->current = lws_adopt_descriptor_vhost(
      fixture->vhost, static_cast<lws_adoption_type>(LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP), fd,
      nullptr, nullptr);
  // (On failure lws closed the fd.)
  char sink[64 * 1024];
  // The viewer's side is shut (end of stream) once lws has read everything and a few turns
  // passed without more to read: the echo comes back through the relay's write path first.
  bool shut = false;
  int quiet = 0;
  for (std::size_t turn = 0; turn < 256 && fixture->current != nullptr; ++turn) {
    lws_service(fixture->context, -1);  // -1: do what is pending, never wait
    while (::recv(viewer, sink, sizeof sink, 0) > 0) {
    }
    fixture->harness.device_turn(turn);
    if (!shut && fixture->current != nullptr) {
      int unread = 0;
      if (::ioctl(fds[1], FIONREAD, &unread) != 0 || unread == 0) ++quiet;
      if (quiet >= 4) {
        ::shutdown(viewer, SHUT_WR);
        shut = true;
      }
    }
  }
  if (fixture->current != nullptr) {
    // Still open (paused by flow control with the device gone quiet, say): cut it off.
    lws_set_timeout(fixture->current, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
  }
  ::close(viewer);
  if (fixture->current != nullptr) std::abort();
  // The relay forgot the end, and told the session it closed.
  if (fixture->relay.open_ends() != 0) std::abort();
  if (fixture->harness.viewer_attached() && !fixture->harness.viewer_closed()) std::abort();
  return 0;
}
