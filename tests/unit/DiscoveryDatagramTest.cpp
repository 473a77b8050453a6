#include "protocol/DiscoveryDatagram.h"

#include <gtest/gtest.h>

namespace tether::protocol {
namespace {

Sha256 filled(std::uint8_t v) {
  Sha256 out{};
  out.fill(v);
  return out;
}

ScanReply sample_reply(bool registered) {
  ScanReply r;
  r.nonce = 0x0102030405060708;
  r.registered = registered;
  r.accepts_registration = !registered;
  r.mac = MacAddress::parse("52:54:00:aa:bb:cc")->bytes();
  r.unit_id = "525400aabbcc";
  r.hostname = "tc-042.branch.example";
  r.product = "tether-agent";
  r.version = "0.1.0";
  if (registered) r.server_fingerprint = filled(0x5a);
  return r;
}

std::vector<std::uint8_t> key32() {
  return std::vector<std::uint8_t>(32, 0x42);
}

TokenRequest sample_token_request() {
  TokenRequest t;
  t.nonce = 21;
  t.device_id = filled(0x31);
  t.mac = MacAddress::parse("52:54:00:aa:bb:cc")->bytes();
  t.hostname = "tc-7";
  t.unit_id = "525400aabbcc";
  t.server_fingerprint = filled(0x5a);
  return t;
}

// Every datagram kind with its encoding, for the generic rejection tests.
std::vector<std::vector<std::uint8_t>> all_samples() {
  std::vector<std::vector<std::uint8_t>> out;
  out.push_back(*encode_scan_probe({.nonce = 7, .reply_port = 40000, .padding = 16}));
  out.push_back(*encode_scan_reply(sample_reply(true), kMaxDatagramSize));
  out.push_back(*encode_scan_reply(sample_reply(false), kMaxDatagramSize));
  OnlineProbe op;
  op.nonce = 9;
  op.reply_port = 40001;
  op.device_id = filled(0x11);
  op.timestamp = 1'700'000'000;
  out.push_back(*encode_online_probe(op, key32()));
  out.push_back(*encode_online_probe(op));
  OnlineReply orep;
  orep.nonce = 9;
  orep.device_id = filled(0x11);
  out.push_back(*encode_online_reply(orep, kMaxDatagramSize, key32()));
  RegisterRequest rq;
  rq.nonce = 11;
  rq.registration_port = 30001;
  rq.server_fingerprint = filled(0x22);
  rq.server_host = "ums.example";
  out.push_back(*encode_register_request(rq));
  out.push_back(*encode_register_reply(
      {.nonce = 11, .status = RegisterStatus::kAccepted, .mac = sample_reply(false).mac},
      kMaxDatagramSize));
  out.push_back(*encode_token_request(sample_token_request()));
  out.push_back(*encode_token_reply(
      {.nonce = 12, .status = TokenStatus::kIssued, .token = "tether1.abc.def.ghi"}));
  out.push_back(*encode_token_reply({.nonce = 13, .status = TokenStatus::kDisabled, .token = ""}));
  return out;
}

TEST(DiscoveryDatagramTest, ScanProbeRoundTrip) {
  ScanProbe p{.nonce = 0xdeadbeefcafef00d, .reply_port = 41234, .padding = 492};
  auto bytes = encode_scan_probe(p);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(bytes->size(), 512u);
  EXPECT_EQ((*bytes)[0], 'T');
  EXPECT_EQ((*bytes)[4], kDiscoveryVersion);
  EXPECT_EQ((*bytes)[5], static_cast<std::uint8_t>(DatagramType::kScanProbe));
  auto decoded = decode_datagram(*bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(std::get<ScanProbe>(*decoded), p);
}

TEST(DiscoveryDatagramTest, ScanReplyRoundTripRegisteredAndNot) {
  for (bool registered : {true, false}) {
    const auto reply = sample_reply(registered);
    auto bytes = encode_scan_reply(reply, 512);
    ASSERT_TRUE(bytes.ok()) << bytes.error().message;
    auto decoded = decode_datagram(*bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.error().message;
    EXPECT_EQ(std::get<ScanReply>(*decoded), reply);
  }
}

TEST(DiscoveryDatagramTest, ReplyNeverLargerThanProbe) {
  const auto reply = sample_reply(true);
  const auto full = *encode_scan_reply(reply, kMaxDatagramSize);
  // Exactly the probe's size fits; one byte less does not.
  EXPECT_TRUE(encode_scan_reply(reply, full.size()).ok());
  auto too_big = encode_scan_reply(reply, full.size() - 1);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().code, Errc::kTooLarge);
  // A minimal 20-byte probe cannot be answered with a scan reply at all.
  const auto small_probe = *encode_scan_probe({.nonce = 1, .reply_port = 5000, .padding = 0});
  EXPECT_EQ(small_probe.size(), 20u);
  EXPECT_FALSE(encode_scan_reply(reply, small_probe.size()).ok());

  OnlineReply o{
      .nonce = 1, .online = true, .device_id = filled(1), .authenticator = {}, .signed_bytes = {}};
  const auto unauth_probe = *encode_online_probe({.nonce = 1,
                                                  .reply_port = 5000,
                                                  .device_id = filled(1),
                                                  .timestamp = 1,
                                                  .authenticator = {},
                                                  .padding = 0,
                                                  .signed_bytes = {}});
  auto unauth_reply = encode_online_reply(o, unauth_probe.size());
  ASSERT_TRUE(unauth_reply.ok());
  EXPECT_LE(unauth_reply->size(), unauth_probe.size());
  const auto auth_probe = *encode_online_probe({.nonce = 1,
                                                .reply_port = 5000,
                                                .device_id = filled(1),
                                                .timestamp = 1,
                                                .authenticator = {},
                                                .padding = 0,
                                                .signed_bytes = {}},
                                               key32());
  auto auth_reply = encode_online_reply(o, auth_probe.size(), key32());
  ASSERT_TRUE(auth_reply.ok());
  EXPECT_LE(auth_reply->size(), auth_probe.size());
  // An authenticated reply does not fit an unauthenticated probe.
  EXPECT_FALSE(encode_online_reply(o, unauth_probe.size(), key32()).ok());

  RegisterReply rr{.nonce = 1, .status = RegisterStatus::kBusy, .mac = sample_reply(false).mac};
  EXPECT_FALSE(encode_register_reply(rr, 22).ok());
  EXPECT_TRUE(encode_register_reply(rr, 23).ok());
}

TEST(DiscoveryDatagramTest, OnlineProbeAuthenticator) {
  OnlineProbe p;
  p.nonce = 77;
  p.reply_port = 40000;
  p.device_id = filled(0x33);
  p.timestamp = 1'800'000'000;
  const auto key = key32();
  auto bytes = *encode_online_probe(p, key);
  auto decoded = std::get<OnlineProbe>(*decode_datagram(bytes));
  ASSERT_TRUE(decoded.authenticator.has_value());
  EXPECT_EQ(decoded.nonce, 77u);
  EXPECT_EQ(decoded.timestamp, 1'800'000'000u);
  EXPECT_TRUE(verify_authenticator(key, decoded.signed_bytes, *decoded.authenticator));
  // A different key, an empty key, or a changed signed byte fails.
  std::vector<std::uint8_t> other(32, 0x43);
  EXPECT_FALSE(verify_authenticator(other, decoded.signed_bytes, *decoded.authenticator));
  EXPECT_FALSE(verify_authenticator({}, decoded.signed_bytes, *decoded.authenticator));
  bytes[20] ^= 0x01;  // inside the device id
  auto tampered = std::get<OnlineProbe>(*decode_datagram(bytes));
  EXPECT_FALSE(verify_authenticator(key, tampered.signed_bytes, *tampered.authenticator));
}

TEST(DiscoveryDatagramTest, OnlineReplyAuthenticatorAndState) {
  OnlineReply r;
  r.nonce = 5;
  r.online = true;
  r.device_id = filled(0x44);
  auto decoded = std::get<OnlineReply>(*decode_datagram(*encode_online_reply(r, 100, key32())));
  EXPECT_TRUE(decoded.online);
  EXPECT_EQ(decoded.device_id, r.device_id);
  ASSERT_TRUE(decoded.authenticator.has_value());
  EXPECT_TRUE(verify_authenticator(key32(), decoded.signed_bytes, *decoded.authenticator));
}

TEST(DiscoveryDatagramTest, RegisterRequestAndReplyRoundTrip) {
  RegisterRequest q;
  q.nonce = 3;
  q.reply_port = 0;
  q.registration_port = 30001;
  q.server_fingerprint = filled(0x77);
  q.server_host = "10.1.2.3";
  q.padding = 8;
  EXPECT_EQ(std::get<RegisterRequest>(*decode_datagram(*encode_register_request(q))), q);
  for (auto status :
       {RegisterStatus::kAccepted, RegisterStatus::kAlreadyRegistered,
        RegisterStatus::kRegisteredElsewhere, RegisterStatus::kDisabled, RegisterStatus::kBusy}) {
    RegisterReply rr{.nonce = 3, .status = status, .mac = sample_reply(false).mac};
    EXPECT_EQ(std::get<RegisterReply>(*decode_datagram(*encode_register_reply(rr, 64))), rr);
  }
}

TEST(DiscoveryDatagramTest, RejectsTruncationAtEveryOffset) {
  for (const auto& sample : all_samples()) {
    ASSERT_TRUE(decode_datagram(sample).ok());
    for (std::size_t len = 0; len < sample.size(); ++len) {
      auto r = decode_datagram(std::span(sample.data(), len));
      ASSERT_FALSE(r.ok()) << "type " << int(sample[5]) << " truncated to " << len;
      // A cut inside the padding shortens it: still truncated, never "ok".
      EXPECT_TRUE(r.error().code == Errc::kTruncated) << r.error().message;
    }
  }
}

TEST(DiscoveryDatagramTest, RejectsTrailingGarbage) {
  for (auto sample : all_samples()) {
    sample.push_back(0);
    auto r = decode_datagram(sample);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::kTrailingData);
  }
}

TEST(DiscoveryDatagramTest, RejectsBadMagicVersionAndType) {
  auto sample = all_samples()[0];
  auto bad = sample;
  bad[0] = 'X';
  EXPECT_EQ(decode_datagram(bad).error().code, Errc::kBadMagic);
  bad = sample;
  bad[4] = 2;
  EXPECT_EQ(decode_datagram(bad).error().code, Errc::kBadVersion);
  bad = sample;
  bad[4] = 0;
  EXPECT_EQ(decode_datagram(bad).error().code, Errc::kBadVersion);
  for (std::uint8_t type : {0, 9, 200, 255}) {
    bad = sample;
    bad[5] = type;
    EXPECT_EQ(decode_datagram(bad).error().code, Errc::kUnknownType) << int(type);
  }
}

TEST(DiscoveryDatagramTest, RejectsNonZeroPaddingAndBadFields) {
  auto probe = *encode_scan_probe({.nonce = 1, .reply_port = 4000, .padding = 4});
  probe.back() = 1;
  EXPECT_EQ(decode_datagram(probe).error().code, Errc::kBadValue);

  auto reply = *encode_scan_reply(sample_reply(false), kMaxDatagramSize);
  reply[16] = 0x80;  // unknown flag bit
  EXPECT_EQ(decode_datagram(reply).error().code, Errc::kBadValue);

  auto rr = *encode_register_reply(
      {.nonce = 1, .status = RegisterStatus::kAccepted, .mac = sample_reply(false).mac}, 64);
  rr[16] = 99;
  EXPECT_EQ(decode_datagram(rr).error().code, Errc::kBadValue);

  RegisterRequest q;
  q.registration_port = 30001;
  auto req = *encode_register_request(q);
  req[18] = 0;
  req[19] = 0;  // registration port 0
  EXPECT_EQ(decode_datagram(req).error().code, Errc::kBadValue);

  OnlineReply o;
  o.device_id = filled(1);
  auto orep = *encode_online_reply(o, 100);
  orep[16] = 2;  // state
  EXPECT_EQ(decode_datagram(orep).error().code, Errc::kBadValue);
  auto op = *encode_online_probe({.nonce = 1,
                                  .reply_port = 1,
                                  .device_id = filled(1),
                                  .timestamp = 0,
                                  .authenticator = {},
                                  .padding = 0,
                                  .signed_bytes = {}});
  op[58] = 16;  // authenticator length other than 0 or 32
  EXPECT_EQ(decode_datagram(op).error().code, Errc::kBadValue);
}

TEST(DiscoveryDatagramTest, RejectsOverlongStringsAndDatagrams) {
  auto reply = sample_reply(false);
  reply.unit_id = std::string(65, 'u');
  EXPECT_EQ(encode_scan_reply(reply, kMaxDatagramSize).error().code, Errc::kTooLarge);
  reply = sample_reply(false);
  reply.hostname = std::string(254, 'h');
  EXPECT_EQ(encode_scan_reply(reply, kMaxDatagramSize).error().code, Errc::kTooLarge);

  // A crafted reply whose unit id length byte says 200 (> 64).
  auto bytes = *encode_scan_reply(sample_reply(false), kMaxDatagramSize);
  bytes[23] = 200;
  EXPECT_EQ(decode_datagram(bytes).error().code, Errc::kTooLarge);

  std::vector<std::uint8_t> huge(kMaxDatagramSize + 1, 0);
  EXPECT_EQ(decode_datagram(huge).error().code, Errc::kTooLarge);
  EXPECT_FALSE(encode_scan_probe({.nonce = 1, .reply_port = 1, .padding = 2000}).ok());
}

TEST(DiscoveryDatagramTest, RegisteredFlagAndFingerprintAgree) {
  auto reply = sample_reply(true);
  reply.server_fingerprint.reset();
  EXPECT_EQ(encode_scan_reply(reply, kMaxDatagramSize).error().code, Errc::kInvalidArgument);
}

TEST(DiscoveryDatagramTest, TokenRequestAndReplyRoundTrip) {
  const auto req = sample_token_request();
  EXPECT_EQ(std::get<TokenRequest>(*decode_datagram(*encode_token_request(req))), req);
  for (auto status : {TokenStatus::kDisabled, TokenStatus::kRefused, TokenStatus::kWrongServer}) {
    TokenReply r{.nonce = 4, .status = status, .token = ""};
    EXPECT_EQ(std::get<TokenReply>(*decode_datagram(*encode_token_reply(r))), r);
  }
  TokenReply issued{.nonce = 5, .status = TokenStatus::kIssued, .token = std::string(200, 't')};
  EXPECT_EQ(std::get<TokenReply>(*decode_datagram(*encode_token_reply(issued))), issued);
  // A token exactly when issued, both ways.
  EXPECT_FALSE(encode_token_reply({.nonce = 1, .status = TokenStatus::kIssued, .token = ""}).ok());
  EXPECT_FALSE(
      encode_token_reply({.nonce = 1, .status = TokenStatus::kRefused, .token = "x"}).ok());
  auto bytes = *encode_token_reply({.nonce = 1, .status = TokenStatus::kRefused, .token = ""});
  bytes[16] = 9;
  EXPECT_EQ(decode_datagram(bytes).error().code, Errc::kBadValue);
  EXPECT_FALSE(encode_token_reply(
                   {.nonce = 1, .status = TokenStatus::kIssued, .token = std::string(256, 't')})
                   .ok());
}

TEST(DiscoveryDatagramTest, TcpFraming) {
  const auto datagram = *encode_token_request(sample_token_request());
  const auto framed = frame_for_tcp(datagram);
  ASSERT_EQ(framed.size(), datagram.size() + 2);
  for (std::size_t n = 0; n < framed.size(); ++n) {
    auto len = tcp_frame_length(std::span(framed.data(), n));
    ASSERT_TRUE(len.ok());
    EXPECT_FALSE(len->has_value()) << n;  // incomplete: wait for more
  }
  auto len = tcp_frame_length(framed);
  ASSERT_TRUE(len.ok() && len->has_value());
  EXPECT_EQ(**len, datagram.size());
  const std::vector<std::uint8_t> zero = {0, 0};
  EXPECT_EQ(tcp_frame_length(zero).error().code, Errc::kTooLarge);
  const std::vector<std::uint8_t> huge = {0xff, 0xff};
  EXPECT_EQ(tcp_frame_length(huge).error().code, Errc::kTooLarge);
}

TEST(DiscoveryDatagramTest, TypeNames) {
  EXPECT_EQ(datagram_type_name(DatagramType::kScanProbe), "scan_probe");
  EXPECT_EQ(datagram_type_name(DatagramType::kRegisterReply), "register_reply");
}

}  // namespace
}  // namespace tether::protocol
