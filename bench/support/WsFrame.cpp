#include "bench/support/WsFrame.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace tether::bench::ws {
namespace {

// One body for both byte containers: the relay frames into std::vector<std::uint8_t>, the
// fleet into std::string.
template <typename Bytes>
void append_frame_to(Bytes& out, std::uint8_t opcode, const std::uint8_t* data, std::size_t n,
                     const std::uint8_t* key) {
  using Byte = typename Bytes::value_type;
  const std::uint8_t mask_bit = key != nullptr ? 0x80 : 0;
  out.push_back(static_cast<Byte>(0x80 | opcode));
  if (n < 126) {
    out.push_back(static_cast<Byte>(mask_bit | n));
  } else if (n <= 0xffff) {
    out.push_back(static_cast<Byte>(mask_bit | 126));
    out.push_back(static_cast<Byte>(n >> 8));
    out.push_back(static_cast<Byte>(n & 0xff));
  } else {
    out.push_back(static_cast<Byte>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8) {
      out.push_back(static_cast<Byte>((static_cast<std::uint64_t>(n) >> shift) & 0xff));
    }
  }
  if (key != nullptr) out.insert(out.end(), key, key + 4);
  const std::size_t at = out.size();
  out.insert(out.end(), data, data + n);
  if (key != nullptr) mask_bytes(reinterpret_cast<std::uint8_t*>(out.data()) + at, n, key, 0);
}

std::string base64(const std::uint8_t* p, std::size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  const int len =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, static_cast<int>(n));
  out.resize(static_cast<std::size_t>(len));
  return out;
}

}  // namespace

void mask_bytes(std::uint8_t* p, std::size_t n, const std::uint8_t key[4], std::uint64_t offset) {
  // Eight bytes at a time: the relay pump masks every byte it sends.
  std::uint8_t k[8];
  for (int i = 0; i < 8; ++i) k[i] = key[(offset + static_cast<std::uint64_t>(i)) & 3];
  std::uint64_t word = 0;
  std::memcpy(&word, k, 8);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t v = 0;
    std::memcpy(&v, p + i, 8);
    v ^= word;
    std::memcpy(p + i, &v, 8);
  }
  for (; i < n; ++i) p[i] ^= k[i & 7];
}

void append_frame(std::vector<std::uint8_t>& out, std::uint8_t opcode, const std::uint8_t* data,
                  std::size_t n, const std::uint8_t* key) {
  append_frame_to(out, opcode, data, n, key);
}

void append_frame(std::string& out, std::uint8_t opcode, std::string_view payload,
                  const std::uint8_t* key) {
  append_frame_to(out, opcode, reinterpret_cast<const std::uint8_t*>(payload.data()),
                  payload.size(), key);
}

std::size_t frame_header_size(std::uint8_t second_byte) {
  const std::uint8_t len7 = second_byte & 0x7f;
  return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((second_byte & 0x80) ? 4 : 0);
}

std::optional<FrameHeader> read_frame_header(const std::uint8_t* p, std::size_t n) {
  if (n < 2 || n < frame_header_size(p[1])) return std::nullopt;
  FrameHeader h;
  h.fin = (p[0] & 0x80) != 0;
  h.reserved = (p[0] & 0x70) != 0;
  h.opcode = p[0] & 0x0f;
  h.masked = (p[1] & 0x80) != 0;
  const std::uint8_t len7 = p[1] & 0x7f;
  std::size_t at = 2;
  h.length = len7;
  if (len7 == 126) {
    h.length = (std::uint64_t{p[2]} << 8) | p[3];
    at = 4;
  } else if (len7 == 127) {
    h.length = 0;
    for (int i = 0; i < 8; ++i) h.length = (h.length << 8) | p[2 + i];
    at = 10;
  }
  if (h.masked) {
    std::memcpy(h.mask, p + at, 4);
    at += 4;
  }
  h.size = at;
  return h;
}

std::optional<Frame> take_frame(std::string& buf, std::uint64_t max_payload) {
  const auto header =
      read_frame_header(reinterpret_cast<const std::uint8_t*>(buf.data()), buf.size());
  if (!header) return std::nullopt;
  Frame fr;
  fr.fin = header->fin;
  fr.opcode = header->opcode;
  if (header->length > max_payload) {
    fr.opcode = kOversized;
    return fr;
  }
  const auto n = static_cast<std::size_t>(header->length);
  if (buf.size() < header->size + n) return std::nullopt;
  fr.payload.assign(buf, header->size, n);
  if (header->masked) {
    mask_bytes(reinterpret_cast<std::uint8_t*>(fr.payload.data()), n, header->mask, 0);
  }
  buf.erase(0, header->size + n);
  return fr;
}

std::string FrameParser::feed(std::uint8_t* p, std::size_t n, const DataFn& data,
                              const ControlFn& control) {
  while (n > 0) {
    if (!in_payload_) {
      header_[header_len_++] = *p++;
      --n;
      if (header_len_ < 2 || header_len_ < frame_header_size(header_[1])) continue;
      if (std::string e = start_frame(); !e.empty()) return e;
      if (remaining_ == 0) finish_frame(control);
      continue;
    }
    const std::size_t take = static_cast<std::size_t>(
        std::min<std::uint64_t>(remaining_, static_cast<std::uint64_t>(n)));
    if (masked_) mask_bytes(p, take, mask_, offset_);
    if (opcode_ >= kOpClose) {
      control_.append(reinterpret_cast<const char*>(p), take);
    } else if (take > 0) {
      data(p, take);
    }
    p += take;
    n -= take;
    remaining_ -= take;
    offset_ += take;
    if (remaining_ == 0) finish_frame(control);
  }
  return {};
}

std::string FrameParser::start_frame() {
  const FrameHeader h = *read_frame_header(header_, header_len_);
  if (h.reserved) return "reserved bits set";
  opcode_ = h.opcode;
  masked_ = h.masked;
  std::memcpy(mask_, h.mask, 4);
  if (opcode_ == kOpText) return "a text frame";
  if (opcode_ >= kOpClose) {
    if (opcode_ > kOpPong) return "unknown control opcode " + std::to_string(opcode_);
    if (!h.fin || h.length > 125) return "bad control frame";
  } else if (opcode_ != kOpBinary && opcode_ != kOpContinuation) {
    return "unknown opcode " + std::to_string(opcode_);
  }
  remaining_ = h.length;
  offset_ = 0;
  in_payload_ = true;
  control_.clear();
  return {};
}

void FrameParser::finish_frame(const ControlFn& control) {
  in_payload_ = false;
  header_len_ = 0;
  if (opcode_ >= kOpClose) control(opcode_, control_);
}

std::string new_upgrade_key() {
  std::uint8_t nonce[16];
  RAND_bytes(nonce, sizeof nonce);
  return base64(nonce, sizeof nonce);
}

std::string accept_key(std::string_view key) {
  const std::string text = std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::uint8_t digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return base64(digest, sizeof digest);
}

std::string host_header(std::string_view host, std::uint16_t port) {
  const std::string name(host);
  return (name.find(':') != std::string::npos ? "[" + name + "]" : name) + ":" +
         std::to_string(port);
}

std::string upgrade_request(std::string_view target, std::string_view host, std::string_view key,
                            std::string_view subprotocol) {
  std::string request = "GET ";
  request.append(target);
  request += " HTTP/1.1\r\nHost: ";
  request.append(host);
  request +=
      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: ";
  request.append(key);
  request += "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ";
  request.append(subprotocol);
  request += "\r\n\r\n";
  return request;
}

std::string check_upgrade_answer(std::string_view head, std::string_view key) {
  if (head.substr(0, 12) != "HTTP/1.1 101") {
    return "upgrade refused: " + std::string(head.substr(0, head.find("\r\n")));
  }
  if (key.empty()) return {};
  std::string lower(head);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  const std::string expected = accept_key(key);
  const std::size_t at = lower.find("\r\nsec-websocket-accept:");
  if (at == std::string::npos || head.find(expected, at) == std::string_view::npos) {
    return "the upgrade answer has no matching Sec-WebSocket-Accept";
  }
  return {};
}

}  // namespace tether::bench::ws
