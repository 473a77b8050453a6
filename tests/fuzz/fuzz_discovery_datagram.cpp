// Discovery datagrams as the responder and the scanner receive them. A decoded datagram must
// re-encode to the same bytes (the format has exactly one encoding per value).
#include <cstdint>
#include <cstdlib>
#include <span>
#include <type_traits>
#include <variant>

#include "protocol/DiscoveryDatagram.h"

using namespace tether::protocol;

namespace {

tether::Result<std::vector<std::uint8_t>> reencode(const Datagram& d) {
  return std::visit(
      [](const auto& v) -> tether::Result<std::vector<std::uint8_t>> {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, ScanProbe>) return encode_scan_probe(v);
        if constexpr (std::is_same_v<T, ScanReply>) return encode_scan_reply(v, kMaxDatagramSize);
        if constexpr (std::is_same_v<T, OnlineProbe>) return encode_online_probe(v);
        if constexpr (std::is_same_v<T, OnlineReply>)
          return encode_online_reply(v, kMaxDatagramSize);
        if constexpr (std::is_same_v<T, RegisterRequest>) return encode_register_request(v);
        if constexpr (std::is_same_v<T, RegisterReply>)
          return encode_register_reply(v, kMaxDatagramSize);
        if constexpr (std::is_same_v<T, TokenRequest>) return encode_token_request(v);
        if constexpr (std::is_same_v<T, TokenReply>) return encode_token_reply(v);
      },
      d);
}

bool has_authenticator(const Datagram& d) {
  if (auto* p = std::get_if<OnlineProbe>(&d)) return p->authenticator.has_value();
  if (auto* r = std::get_if<OnlineReply>(&d)) return r->authenticator.has_value();
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  auto decoded = decode_datagram(input);
  if (!decoded.ok()) return 0;
  // Authenticated datagrams re-encode only with their key; the rest must round-trip exactly.
  if (has_authenticator(*decoded)) return 0;
  auto bytes = reencode(*decoded);
  if (!bytes.ok()) std::abort();
  // Receivers ignore the reserved flags (bytes 6-7) and encoders write zero there.
  if (bytes->size() != size) std::abort();
  for (std::size_t i = 0; i < size; ++i) {
    if (i != 6 && i != 7 && (*bytes)[i] != data[i]) std::abort();
  }
  return 0;
}
