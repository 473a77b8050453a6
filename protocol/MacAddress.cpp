#include "protocol/MacAddress.h"

#include "common/Hex.h"

namespace tether::protocol {
namespace {

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Error bad_mac(std::string_view text, std::string_view why) {
  // Network input may hold anything; show at most a short, printable prefix.
  std::string shown;
  for (char c : text.substr(0, 32)) shown.push_back((c >= 0x20 && c < 0x7f) ? c : '?');
  return make_error(Errc::kBadValue, "invalid MAC address \"" + shown + "\": " + std::string(why));
}

}  // namespace

Result<MacAddress> MacAddress::parse(std::string_view text) {
  Bytes bytes{};
  if (text.size() == 12) {
    for (std::size_t i = 0; i < 6; ++i) {
      const int hi = hex_digit(text[2 * i]);
      const int lo = hex_digit(text[2 * i + 1]);
      if (hi < 0 || lo < 0) return bad_mac(text, "expected hex digits");
      bytes[i] = static_cast<std::uint8_t>((hi << 4) | lo);
    }
  } else if (text.size() == 17) {
    const char sep = text[2];
    if (sep != ':' && sep != '-') return bad_mac(text, "expected ':' or '-' between octets");
    for (std::size_t i = 0; i < 6; ++i) {
      const std::size_t at = i * 3;
      if (i > 0 && text[at - 1] != sep) return bad_mac(text, "mixed or missing separators");
      const int hi = hex_digit(text[at]);
      const int lo = hex_digit(text[at + 1]);
      if (hi < 0 || lo < 0) return bad_mac(text, "expected hex digits");
      bytes[i] = static_cast<std::uint8_t>((hi << 4) | lo);
    }
  } else {
    return bad_mac(text, "expected six octets like aa:bb:cc:dd:ee:ff");
  }
  auto checked = from_bytes(bytes);
  if (!checked.ok()) return bad_mac(text, checked.error().message);
  return checked;
}

Result<MacAddress> MacAddress::from_bytes(const Bytes& bytes) {
  bool all_zero = true;
  for (auto b : bytes) all_zero = all_zero && b == 0;
  if (all_zero) return make_error(Errc::kBadValue, "the all-zero address names no NIC");
  if ((bytes[0] & 0x01) != 0) {
    // Broadcast ff:ff:ff:ff:ff:ff has the group bit set too.
    return make_error(Errc::kBadValue, "a multicast or broadcast address names no single NIC");
  }
  return MacAddress(bytes);
}

std::string MacAddress::to_string() const {
  std::string out;
  const std::string hex = hex_encode(bytes_);
  for (std::size_t i = 0; i < 6; ++i) {
    if (i > 0) out.push_back(':');
    out.append(hex, 2 * i, 2);
  }
  return out;
}

}  // namespace tether::protocol
