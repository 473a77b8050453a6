// WebSocket framing for the benchmark clients (RFC 6455), shared by tether-bench-fleet and
// tether-bench-relay: building frames (masked, as a client's must be), decoding frame
// headers, the two parsers the programs need (whole frames off a buffer for the fleet's small
// envelopes; a streaming parser for the relay's bulk binary data), and the client's side of
// the upgrade. No I/O here: the programs own their sockets and loops.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tether::bench::ws {

constexpr std::uint8_t kOpContinuation = 0;
constexpr std::uint8_t kOpText = 1;
constexpr std::uint8_t kOpBinary = 2;
constexpr std::uint8_t kOpClose = 8;
constexpr std::uint8_t kOpPing = 9;
constexpr std::uint8_t kOpPong = 10;

// XORs `n` bytes with the mask `key`, `offset` bytes into the frame's payload (so a payload
// can be unmasked in pieces as it arrives).
void mask_bytes(std::uint8_t* p, std::size_t n, const std::uint8_t key[4], std::uint64_t offset);

// Appends one final frame; masked when `key` (4 bytes) is given, unmasked when it is null.
void append_frame(std::vector<std::uint8_t>& out, std::uint8_t opcode, const std::uint8_t* data,
                  std::size_t n, const std::uint8_t* key);
void append_frame(std::string& out, std::uint8_t opcode, std::string_view payload,
                  const std::uint8_t* key);

struct FrameHeader {
  bool fin = true;
  bool reserved = false;  // one of RSV1..RSV3 set (no extension is ever negotiated)
  std::uint8_t opcode = 0;
  bool masked = false;
  std::uint8_t mask[4]{};
  std::uint64_t length = 0;  // of the payload
  std::size_t size = 0;      // of the header, mask included
};

// The size of a frame header (2..14 bytes), known from its second byte.
std::size_t frame_header_size(std::uint8_t second_byte);

// Decodes the header at the front of `p`; nullopt while it is not all there.
std::optional<FrameHeader> read_frame_header(const std::uint8_t* p, std::size_t n);

// A whole frame, payload unmasked.
struct Frame {
  bool fin = true;
  int opcode = 0;  // kOversized: the frame announced more than the caller allows
  std::string payload;
};
constexpr int kOversized = -1;

// Takes one whole frame off the front of `buf`; nullopt while it is not all there. A frame
// longer than `max_payload` comes back at once as opcode kOversized (and stays in `buf`: the
// stream is unusable then).
std::optional<Frame> take_frame(std::string& buf, std::uint64_t max_payload);

// Splits a byte stream into frames as it arrives: data payloads go to `data` in pieces
// (unmasked in place, no copy), control frames whole to `control`. For byte streams only
// (the shadowing tunnel): a text frame is a protocol error, as is any reserved bit.
class FrameParser {
 public:
  using DataFn = std::function<void(const std::uint8_t*, std::size_t)>;
  using ControlFn = std::function<void(std::uint8_t, std::string_view)>;

  // Empty when fine, else the protocol error (the stream is then unusable).
  std::string feed(std::uint8_t* p, std::size_t n, const DataFn& data, const ControlFn& control);

 private:
  std::string start_frame();
  void finish_frame(const ControlFn& control);

  std::uint8_t header_[14]{};
  std::size_t header_len_ = 0;
  bool in_payload_ = false;
  std::uint8_t opcode_ = 0;
  bool masked_ = false;
  std::uint8_t mask_[4]{};
  std::uint64_t remaining_ = 0;
  std::uint64_t offset_ = 0;
  std::string control_;
};

// ---- the upgrade (client side) ----------------------------------------------------------

// A fresh Sec-WebSocket-Key: 16 random bytes in base64.
std::string new_upgrade_key();

// The Sec-WebSocket-Accept a server answers `key` with.
std::string accept_key(std::string_view key);

// The Host header's value: host:port, an IPv6 address in brackets.
std::string host_header(std::string_view host, std::uint16_t port);

// The upgrade request for `target` (path and query) with one subprotocol.
std::string upgrade_request(std::string_view target, std::string_view host, std::string_view key,
                            std::string_view subprotocol);

// Empty when the answer's head (what precedes its blank line "\r\n\r\n") accepts the upgrade —
// status 101 and, when `key` is given, the Sec-WebSocket-Accept for that key — else why not.
std::string check_upgrade_answer(std::string_view head, std::string_view key);

}  // namespace tether::bench::ws
