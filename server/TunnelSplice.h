// The relay's decisions for one shadowing session, without sockets (docs/protocol.md §5):
// two ends (the device's tunnel and the viewer's WebSocket), a bounded queue toward each,
// flow control on the sending end when the queue toward the other is full, buffering for an
// end that arrives before its peer, and closing one end after the other went away once what
// is queued toward it is written. TunnelRelay turns these decisions into lws calls; the unit
// tests drive it through a fake TunnelEndIo.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace tether::server {

enum class TunnelEnd { kDevice = 0, kViewer = 1 };

[[nodiscard]] constexpr TunnelEnd other_end(TunnelEnd end) noexcept {
  return end == TunnelEnd::kDevice ? TunnelEnd::kViewer : TunnelEnd::kDevice;
}
[[nodiscard]] const char* tunnel_end_name(TunnelEnd end) noexcept;

// WebSocket close codes of the relay.
inline constexpr int kTunnelCloseNormal = 1000;
inline constexpr int kTunnelCloseUnsupportedData = 1003;  // a text message
inline constexpr int kTunnelClosePeerTimeout = 4408;      // the peer did not arrive in time

// What the splice asks of the sockets. Calls come from inside TunnelSplice's methods.
class TunnelEndIo {
 public:
  virtual ~TunnelEndIo() = default;
  // The end has something to write (data or its close): call TunnelSplice::take when it is
  // writable.
  virtual void request_writable(TunnelEnd end) = 0;
  // Stop (false) or resume (true) reading from the end.
  virtual void set_receiving(TunnelEnd end, bool receiving) = 0;
};

struct TunnelLimits {
  std::size_t max_queued = 256 * 1024;  // bytes held unsent toward one end before pausing
  std::size_t max_message = 64 * 1024;  // bytes per message written
};

class TunnelSplice {
 public:
  struct Write {
    std::string data;  // one binary message
  };
  struct Close {
    int code = kTunnelCloseNormal;
    std::string reason;
  };
  using Action = std::variant<std::monostate, Write, Close>;

  explicit TunnelSplice(TunnelEndIo& io, TunnelLimits limits = {});

  // The end's WebSocket is open.
  void attach(TunnelEnd end);
  // A binary message (or a part of one) from `from`, for the other end.
  void received(TunnelEnd from, std::string_view bytes);
  // A text message from `from`: that end is closed with 1003 (its peer then as after a close).
  void received_text(TunnelEnd from);
  // The end's WebSocket closed (its close callback ran). The other end, if open, gets what is
  // queued toward it and is then closed with 1000 and "<end>_closed".
  void detach(TunnelEnd end);
  // What to do now that `end` is writable: write a message, close, or nothing.
  [[nodiscard]] Action take(TunnelEnd end);
  // Closes an open end with `code`: after what is queued toward it when `flush`, at once
  // otherwise.
  void close(TunnelEnd end, int code, const std::string& reason, bool flush);

  [[nodiscard]] bool attached(TunnelEnd end) const noexcept { return at(end).attached; }
  // The end was attached and has gone since.
  [[nodiscard]] bool gone(TunnelEnd end) const noexcept { return at(end).gone; }
  [[nodiscard]] bool spliced() const noexcept { return spliced_; }
  [[nodiscard]] bool paused(TunnelEnd end) const noexcept { return at(end).paused; }
  // Bytes queued toward the end, not yet taken.
  [[nodiscard]] std::size_t queued(TunnelEnd end) const noexcept { return at(end).queued; }
  // Bytes taken for writing toward the end.
  [[nodiscard]] std::uint64_t bytes_to(TunnelEnd end) const noexcept { return at(end).sent; }
  // The first end that went away (closed on its own or for a text message), if any.
  [[nodiscard]] std::optional<TunnelEnd> first_gone() const noexcept { return first_gone_; }

 private:
  struct Side {
    bool attached = false;
    bool gone = false;
    bool paused = false;            // we stopped reading from it
    std::deque<std::string> queue;  // toward it
    std::size_t queued = 0;
    std::uint64_t sent = 0;
    std::optional<Close> closing;  // close it once `queue` is written (at once if flushed)
  };
  Side& at(TunnelEnd end) noexcept { return sides_[static_cast<std::size_t>(end)]; }
  const Side& at(TunnelEnd end) const noexcept { return sides_[static_cast<std::size_t>(end)]; }
  void resume_if_drained(TunnelEnd toward);

  TunnelEndIo& io_;
  TunnelLimits limits_;
  std::array<Side, 2> sides_{};
  bool spliced_ = false;
  std::optional<TunnelEnd> first_gone_;
};

}  // namespace tether::server
