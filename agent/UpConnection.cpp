#include "agent/UpConnection.h"

#include <cstring>
#include <utility>
#include <vector>

namespace tether::agent {

UpConnection::UpConnection(lws_context* context, lws_vhost* vhost, UpConnectionListener& listener,
                           UpConnectionOptions options)
    : context_(context), vhost_(vhost), listener_(listener), options_(std::move(options)) {
  idle_policy_.secs_since_valid_ping = options_.ping_interval_s;
  idle_policy_.secs_since_valid_hangup = static_cast<std::uint16_t>(options_.ping_interval_s * 2);
}

UpConnection::~UpConnection() {
  // The wsi may outlive us by a few callbacks; make sure none of them finds this object.
  if (wsi_ != nullptr) {
    lws_set_wsi_user(wsi_, nullptr);
    lws_set_timeout(wsi_, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    wsi_ = nullptr;
  }
}

Status UpConnection::connect(const protocol::ServerUrl& url) {
  if (wsi_ != nullptr) return make_error(Errc::kConflict, "already connected or connecting");
  host_ = url.host;
  const bool v6 = url.host.find(':') != std::string::npos;
  host_header_ = v6 ? "[" + url.host + "]" : url.host;
  established_ = false;
  queue_.clear();
  queued_bytes_ = 0;
  rx_.clear();
  rx_overflow_ = false;
  pending_close_code_ = 0;
  end_ = ChannelEnd{};
  reported_ = false;

  lws_client_connect_info info{};
  info.context = context_;
  info.vhost = vhost_;
  info.address = host_.c_str();
  info.port = url.port;
  info.path = options_.path.c_str();
  info.host = host_header_.c_str();
  info.origin = host_header_.c_str();
  info.ssl_connection = LCCSCF_USE_SSL;
  info.protocol = options_.subprotocol.c_str();
  info.local_protocol_name = options_.subprotocol.c_str();
  info.userdata = this;
  info.retry_and_idle_policy = &idle_policy_;
  // Not info.pwsi: lws may write through it when an old connection is freed, which would
  // clobber the pointer to a newer one.
  lws* wsi = lws_client_connect_via_info(&info);
  if (wsi == nullptr) {
    // A synchronous failure may already have been reported through the callback.
    if (!reported_) {
      reported_ = true;
      return make_error(Errc::kUnavailable, "cannot start a connection to " + url.to_string());
    }
    return {};
  }
  if (!reported_) wsi_ = wsi;
  return {};
}

Status UpConnection::send(std::string text) {
  if (wsi_ == nullptr || !established_) {
    return make_error(Errc::kUnavailable, "the channel is not open");
  }
  if (queued_bytes_ + text.size() > options_.max_queued_bytes) {
    return make_error(Errc::kTooLarge, "the outgoing queue is full");
  }
  queued_bytes_ += text.size();
  queue_.push_back(std::move(text));
  lws_callback_on_writable(wsi_);
  return {};
}

void UpConnection::close(int code, std::string reason) {
  if (wsi_ == nullptr) return;
  if (!established_) {
    abort();
    return;
  }
  pending_close_code_ = code;
  pending_close_reason_ = std::move(reason);
  lws_callback_on_writable(wsi_);
}

void UpConnection::abort() {
  if (wsi_ == nullptr) return;
  if (end_.error.empty()) end_.error = "closed by this side";
  lws_set_timeout(wsi_, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
  // Before the upgrade, do not count on a callback from lws for the killed connection (it may
  // come late, or only as WSI_DESTROY): report the end now.
  if (!established_) finish(wsi_, end_.error);
}

void UpConnection::finish(lws* wsi, std::string error) {
  // Detach the wsi: any later callback for it goes to the dummy handler, never to us (we
  // may be connecting again with a new wsi by then).
  if (wsi != nullptr) lws_set_wsi_user(wsi, nullptr);
  if (wsi != nullptr && wsi_ != nullptr && wsi != wsi_) return;  // an older connection
  wsi_ = nullptr;
  established_ = false;
  queue_.clear();
  queued_bytes_ = 0;
  if (reported_) return;
  reported_ = true;
  if (end_.error.empty()) end_.error = std::move(error);
  listener_.on_closed(end_);
}

int UpConnection::callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                           std::size_t len) {
  auto* self = static_cast<UpConnection*>(user);
  if (self == nullptr) return lws_callback_http_dummy(wsi, reason, user, in, len);
  return self->handle(wsi, reason, in, len);
}

int UpConnection::handle(lws* wsi, lws_callback_reasons reason, void* in, std::size_t len) {
  switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
      std::string why = "connection failed";
      if (in != nullptr) {
        const auto* text = static_cast<const char*>(in);
        why.assign(text, strnlen(text, len != 0 ? len : 256));
      }
      if (const unsigned status = lws_http_client_http_response(wsi); status >= 300) {
        why = "the server refused the channel (HTTP " + std::to_string(status) + ")";
      }
      finish(wsi, why);
      return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
      established_ = true;
      end_.established = true;
      listener_.on_established();
      return 0;

    case LWS_CALLBACK_CLIENT_RECEIVE: {
      if (lws_is_first_fragment(wsi)) {
        rx_.clear();
        rx_overflow_ = false;
      }
      if (lws_frame_is_binary(wsi)) {
        pending_close_code_ = LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE;
        pending_close_reason_ = "binary messages are not part of this protocol";
        lws_callback_on_writable(wsi);
        return 0;
      }
      if (!rx_overflow_ && rx_.size() + len > options_.max_message_bytes) {
        // The rest of the message is dropped piece by piece as it arrives: however large it
        // is (a frame may claim up to 2^63-1 bytes), no more than the limit is ever held. The
        // listener hears of it at the message's end and the channel stays up.
        rx_overflow_ = true;
        std::string().swap(rx_);
      }
      if (!rx_overflow_) rx_.append(static_cast<const char*>(in), len);
      if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
        if (std::exchange(rx_overflow_, false)) {
          listener_.on_oversized();
          return 0;
        }
        std::string message;
        message.swap(rx_);
        listener_.on_text(message);
      }
      return 0;
    }

    case LWS_CALLBACK_CLIENT_WRITEABLE: {
      // Queued messages go out before a close: a command's result sent just before the
      // agent stops (reboot) must reach the server.
      if (!queue_.empty()) {
        std::string& front = queue_.front();
        std::vector<unsigned char> buf(LWS_PRE + front.size());
        std::memcpy(buf.data() + LWS_PRE, front.data(), front.size());
        const int n = lws_write(wsi, buf.data() + LWS_PRE, front.size(), LWS_WRITE_TEXT);
        if (n < static_cast<int>(front.size())) {
          end_.error = "write failed";
          return -1;
        }
        queued_bytes_ -= front.size();
        queue_.pop_front();
        if (!queue_.empty() || pending_close_code_ != 0) lws_callback_on_writable(wsi);
        return 0;
      }
      if (pending_close_code_ != 0) {
        lws_close_reason(wsi, static_cast<lws_close_status>(pending_close_code_),
                         reinterpret_cast<unsigned char*>(pending_close_reason_.data()),
                         pending_close_reason_.size());
        end_.error = "closed by this side: " + pending_close_reason_;
        return -1;
      }
      return 0;
    }

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
      if (len == 1) {
        // RFC 6455 §5.5.1: a close body is empty or starts with a two-byte code. Fail the
        // connection rather than echo the byte back (lws 4.1.6 would).
        end_.error = "the server sent a malformed close frame";
        return -1;
      }
      if (len >= 2) {
        auto* p = static_cast<unsigned char*>(in);
        if (((p[0] << 8) | p[1]) >= 5000) {
          // lws 4.1.6 answers codes it knows to be invalid with 1002 by rewriting them here,
          // in the buffer it then echoes, but lets 5000 and up through: do the same for those.
          p[0] = LWS_CLOSE_STATUS_PROTOCOL_ERR >> 8;
          p[1] = LWS_CLOSE_STATUS_PROTOCOL_ERR & 0xff;
        }
        end_.close_code = (p[0] << 8) | p[1];
        end_.close_reason.assign(reinterpret_cast<const char*>(p + 2),
                                 std::min<std::size_t>(len - 2, 123));
      }
      return 0;

    case LWS_CALLBACK_CLIENT_CLOSED:
      finish(wsi,
             end_.close_code != 0 ? "the server closed the channel" : "the connection was lost");
      return 0;

    case LWS_CALLBACK_WSI_DESTROY: finish(wsi, "the connection was lost"); return 0;

    default: break;
  }
  return lws_callback_http_dummy(wsi, reason, this, in, len);
}

}  // namespace tether::agent
