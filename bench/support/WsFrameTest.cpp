#include "bench/support/WsFrame.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace tether::bench::ws {
namespace {

std::vector<std::uint8_t> some_bytes(std::size_t n, std::uint8_t seed = 1) {
  std::vector<std::uint8_t> v(n);
  std::uint32_t x = 0x9e3779b9u ^ seed;
  for (auto& b : v) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<std::uint8_t>(x);
  }
  return v;
}

const std::uint8_t* bytes(const char* s) {
  return reinterpret_cast<const std::uint8_t*>(s);
}

TEST(WsFrameTest, MaskingInPiecesEqualsMaskingAtOnce) {
  const std::uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  std::vector<std::uint8_t> whole(1000), pieces;
  for (std::size_t i = 0; i < whole.size(); ++i) whole[i] = static_cast<std::uint8_t>(i * 7);
  pieces = whole;
  mask_bytes(whole.data(), whole.size(), key, 0);
  std::size_t at = 0;
  for (std::size_t step : {1u, 3u, 8u, 13u, 100u, 875u}) {
    mask_bytes(pieces.data() + at, step, key, at);
    at += step;
  }
  ASSERT_EQ(at, pieces.size());
  EXPECT_EQ(whole, pieces);
  for (std::size_t i = 0; i < whole.size(); ++i) {
    ASSERT_EQ(whole[i], static_cast<std::uint8_t>((i * 7) ^ key[i % 4])) << "at " << i;
  }
}

TEST(WsFrameTest, HeaderLengthClasses) {
  const std::uint8_t key[4] = {9, 8, 7, 6};
  for (std::size_t n : {0u, 125u, 126u, 65535u, 65536u, 70000u}) {
    const auto payload = some_bytes(n);
    for (const std::uint8_t* k : {key, static_cast<const std::uint8_t*>(nullptr)}) {
      std::vector<std::uint8_t> wire;
      append_frame(wire, kOpBinary, payload.data(), n, k);
      const std::size_t len_bytes = n < 126 ? 0 : n <= 0xffff ? 2 : 8;
      const std::size_t header = 2 + len_bytes + (k != nullptr ? 4 : 0);
      ASSERT_EQ(wire.size(), header + n);
      EXPECT_EQ(frame_header_size(wire[1]), header);
      EXPECT_FALSE(read_frame_header(wire.data(), header - 1)) << n;
      const auto h = read_frame_header(wire.data(), header);
      ASSERT_TRUE(h) << n;
      EXPECT_TRUE(h->fin);
      EXPECT_FALSE(h->reserved);
      EXPECT_EQ(h->opcode, kOpBinary);
      EXPECT_EQ(h->masked, k != nullptr);
      EXPECT_EQ(h->length, n);
      EXPECT_EQ(h->size, header);
      if (k != nullptr) {
        EXPECT_TRUE(std::equal(key, key + 4, h->mask));
      }
    }
  }
}

// The fleet's way: whole frames off a string buffer.
TEST(WsFrameTest, TakeFrameRoundTripsAndWaitsForTheRest) {
  const std::uint8_t key[4] = {0xde, 0xad, 0xbe, 0xef};
  for (std::size_t n : {0u, 125u, 126u, 70000u}) {
    const std::string payload(n, 'x');
    std::string buf;
    append_frame(buf, kOpText, payload, key);
    buf += "tail";
    auto fr = take_frame(buf, 1u << 20);
    ASSERT_TRUE(fr) << n;
    EXPECT_EQ(fr->opcode, kOpText);
    EXPECT_TRUE(fr->fin);
    EXPECT_EQ(fr->payload, payload);
    EXPECT_EQ(buf, "tail");
  }
  std::string partial;
  append_frame(partial, kOpPing, "ping", key);
  partial.resize(5);
  EXPECT_FALSE(take_frame(partial, 1u << 20));
  EXPECT_EQ(partial.size(), 5u);
  std::string one_byte("\x89", 1);
  EXPECT_FALSE(take_frame(one_byte, 1u << 20));
}

TEST(WsFrameTest, TakeFrameReadsAServersCloseFrame) {
  std::string server_frame("\x88\x02\x03\xf4", 4);  // close 1012, unmasked
  auto close = take_frame(server_frame, 1u << 20);
  ASSERT_TRUE(close);
  EXPECT_EQ(close->opcode, kOpClose);
  ASSERT_EQ(close->payload.size(), 2u);
  EXPECT_EQ((static_cast<unsigned char>(close->payload[0]) << 8) |
                static_cast<unsigned char>(close->payload[1]),
            1012);
  EXPECT_TRUE(server_frame.empty());
}

TEST(WsFrameTest, TakeFrameRefusesAnOversizedFrameBeforeItArrives) {
  std::string buf;
  append_frame(buf, kOpBinary, std::string(2000, 'y'), nullptr);
  buf.resize(10);
  auto fr = take_frame(buf, 1000);
  ASSERT_TRUE(fr);
  EXPECT_EQ(fr->opcode, kOversized);
}

// The relay's way: a stream split anyhow, data in pieces, control frames whole.
TEST(WsFrameTest, FrameParserRoundTripsSplitAnyhow) {
  for (std::size_t size : {0u, 1u, 125u, 126u, 127u, 65535u, 65536u, 70001u}) {
    std::vector<std::uint8_t> wire;
    const std::uint8_t key[4] = {1, 2, 3, 4};
    const auto payload = some_bytes(size, static_cast<std::uint8_t>(size));
    append_frame(wire, kOpPing, bytes("hi"), 2, key);
    append_frame(wire, kOpBinary, payload.data(), size, size % 2 ? key : nullptr);
    append_frame(wire, kOpClose, bytes("\x03\xe8"), 2, nullptr);
    for (std::size_t step : {wire.size(), std::size_t{1}, std::size_t{7}, std::size_t{4096}}) {
      std::vector<std::uint8_t> copy = wire;
      FrameParser parser;
      std::vector<std::uint8_t> got;
      std::vector<std::pair<int, std::string>> controls;
      std::string e;
      for (std::size_t at = 0; at < copy.size() && e.empty(); at += step) {
        e = parser.feed(
            copy.data() + at, std::min(step, copy.size() - at),
            [&](const std::uint8_t* p, std::size_t n) { got.insert(got.end(), p, p + n); },
            [&](std::uint8_t op, std::string_view pl) { controls.emplace_back(op, pl); });
      }
      const std::string where = std::to_string(size) + " in steps of " + std::to_string(step);
      EXPECT_EQ(e, "") << where;
      EXPECT_EQ(got, payload) << where;
      ASSERT_EQ(controls.size(), 2u) << where;
      EXPECT_EQ(controls[0], (std::pair<int, std::string>(kOpPing, "hi"))) << where;
      EXPECT_EQ(controls[1], (std::pair<int, std::string>(kOpClose, "\x03\xe8"))) << where;
    }
  }
}

std::string parse_error(std::vector<std::uint8_t> wire) {
  FrameParser parser;
  return parser.feed(
      wire.data(), wire.size(), [](const std::uint8_t*, std::size_t) {},
      [](std::uint8_t, std::string_view) {});
}

TEST(WsFrameTest, FrameParserRefusesWhatATunnelNeverCarries) {
  std::vector<std::uint8_t> text;
  append_frame(text, kOpText, bytes("x"), 1, nullptr);
  EXPECT_EQ(parse_error(text), "a text frame");
  EXPECT_EQ(parse_error({0xc2, 0x00}), "reserved bits set");
  const auto long_payload = some_bytes(126);
  std::vector<std::uint8_t> long_ping;
  append_frame(long_ping, kOpPing, long_payload.data(), long_payload.size(), nullptr);
  EXPECT_EQ(parse_error(long_ping), "bad control frame");
  EXPECT_EQ(parse_error({0x09, 0x00}), "bad control frame");  // a fragmented ping
  EXPECT_EQ(parse_error({0x83, 0x00}), "unknown opcode 3");
  EXPECT_EQ(parse_error({0x8b, 0x00}), "unknown control opcode 11");
}

// RFC 6455 §1.3's example.
TEST(WsFrameTest, AcceptKey) {
  EXPECT_EQ(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WsFrameTest, NewUpgradeKeysAreSixteenBytesAndDiffer) {
  const std::string a = new_upgrade_key(), b = new_upgrade_key();
  EXPECT_EQ(a.size(), 24u);
  EXPECT_EQ(a.substr(22), "==");
  EXPECT_NE(a, b);
}

TEST(WsFrameTest, UpgradeRequest) {
  EXPECT_EQ(host_header("127.0.0.1", 8443), "127.0.0.1:8443");
  EXPECT_EQ(host_header("::1", 80), "[::1]:80");
  EXPECT_EQ(upgrade_request("/up", "127.0.0.1:8443", "dGhlIHNhbXBsZSBub25jZQ==", "tether.up.v1"),
            "GET /up HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tether.up.v1\r\n\r\n");
}

TEST(WsFrameTest, UpgradeAnswer) {
  const std::string key = "dGhlIHNhbXBsZSBub25jZQ==";
  const std::string ok =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "SEC-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
  EXPECT_EQ(check_upgrade_answer(ok, key), "");
  EXPECT_EQ(check_upgrade_answer(ok, ""), "");
  EXPECT_EQ(check_upgrade_answer("HTTP/1.1 101 Switching Protocols", ""), "");
  EXPECT_EQ(check_upgrade_answer("HTTP/1.1 403 Forbidden\r\nContent-Length: 0", key),
            "upgrade refused: HTTP/1.1 403 Forbidden");
  EXPECT_EQ(
      check_upgrade_answer("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x", key),
      "the upgrade answer has no matching Sec-WebSocket-Accept");
  EXPECT_EQ(check_upgrade_answer("HTTP/1.1 101 Switching Protocols", key),
            "the upgrade answer has no matching Sec-WebSocket-Accept");
}

}  // namespace
}  // namespace tether::bench::ws
