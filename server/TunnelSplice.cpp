#include "server/TunnelSplice.h"

#include <algorithm>

namespace tether::server {

const char* tunnel_end_name(TunnelEnd end) noexcept {
  return end == TunnelEnd::kDevice ? "device" : "viewer";
}

TunnelSplice::TunnelSplice(TunnelEndIo& io, TunnelLimits limits) : io_(io), limits_(limits) {
  limits_.max_message = std::max<std::size_t>(limits_.max_message, 1);
}

void TunnelSplice::attach(TunnelEnd end) {
  Side& side = at(end);
  if (side.attached || side.gone) return;
  side.attached = true;
  const Side& peer = at(other_end(end));
  if (peer.attached) spliced_ = true;
  if (peer.gone && !side.closing) {
    // The peer came, maybe said something, and left before this end arrived.
    side.closing =
        Close{kTunnelCloseNormal, std::string(tunnel_end_name(other_end(end))) + "_closed"};
  }
  if (!side.queue.empty() || side.closing) io_.request_writable(end);
}

void TunnelSplice::received(TunnelEnd from, std::string_view bytes) {
  Side& source = at(from);
  if (!source.attached || source.gone || source.closing) return;
  const TunnelEnd to = other_end(from);
  Side& target = at(to);
  // Nobody left to deliver to: the end is being closed anyway.
  if (target.gone || target.closing) return;
  if (bytes.empty()) return;
  while (!bytes.empty()) {
    const std::size_t n = std::min(bytes.size(), limits_.max_message);
    target.queue.emplace_back(bytes.substr(0, n));
    target.queued += n;
    bytes.remove_prefix(n);
  }
  if (target.attached) io_.request_writable(to);
  if (target.queued > limits_.max_queued && !source.paused) {
    source.paused = true;
    io_.set_receiving(from, false);
  }
}

void TunnelSplice::received_text(TunnelEnd from) {
  if (!first_gone_) first_gone_ = from;
  close(from, kTunnelCloseUnsupportedData, "text messages are not allowed", false);
}

void TunnelSplice::detach(TunnelEnd end) {
  Side& side = at(end);
  if (!side.attached || side.gone) return;
  side.attached = false;
  side.gone = true;
  side.paused = false;
  side.queue.clear();
  side.queued = 0;
  side.closing.reset();
  if (!first_gone_) first_gone_ = end;
  const TunnelEnd peer_end = other_end(end);
  Side& peer = at(peer_end);
  // Nothing it sends can be delivered now; read on so that its close handshake completes.
  if (peer.paused) {
    peer.paused = false;
    if (peer.attached) io_.set_receiving(peer_end, true);
  }
  if (peer.attached && !peer.closing) {
    peer.closing = Close{kTunnelCloseNormal, std::string(tunnel_end_name(end)) + "_closed"};
    io_.request_writable(peer_end);
  }
}

TunnelSplice::Action TunnelSplice::take(TunnelEnd end) {
  Side& side = at(end);
  if (!side.attached || side.gone) return std::monostate{};
  if (!side.queue.empty()) {
    Write write{std::move(side.queue.front())};
    side.queue.pop_front();
    side.queued -= write.data.size();
    side.sent += write.data.size();
    resume_if_drained(end);
    if (!side.queue.empty() || side.closing) io_.request_writable(end);
    return write;
  }
  if (side.closing) return *side.closing;
  return std::monostate{};
}

void TunnelSplice::close(TunnelEnd end, int code, const std::string& reason, bool flush) {
  Side& side = at(end);
  if (!side.attached || side.gone) return;
  if (!flush) {
    side.queue.clear();
    side.queued = 0;
    resume_if_drained(end);
  }
  // The first decision stands (a flush-and-close is not turned into another reason), except
  // that closing at once overrides a pending flush.
  if (!side.closing || !flush) side.closing = Close{code, reason};
  io_.request_writable(end);
}

void TunnelSplice::resume_if_drained(TunnelEnd toward) {
  const TunnelEnd from = other_end(toward);
  Side& source = at(from);
  if (!source.paused || at(toward).queued >= limits_.max_queued / 2) return;
  source.paused = false;
  if (source.attached && !source.gone) io_.set_receiving(from, true);
}

}  // namespace tether::server
