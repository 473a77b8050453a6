#include "protocol/EnrollmentToken.h"

#include <arpa/inet.h>

#include <cctype>
#include <charconv>

#include "common/Base64.h"
#include "common/Hex.h"

namespace tether::protocol {
namespace {

bool valid_host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.';
}

}  // namespace

std::string ServerUrl::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  return "wss://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<ServerUrl> parse_server_url(std::string_view text) {
  auto bad = [&](const std::string& why) {
    std::string shown;
    for (char c : text.substr(0, 80)) shown.push_back((c >= 0x20 && c < 0x7f) ? c : '?');
    return make_error(Errc::kBadValue, "invalid server URL \"" + shown + "\": " + why);
  };
  constexpr std::string_view kScheme = "wss://";
  if (text.rfind(kScheme, 0) != 0) return bad("it must start with wss://");
  std::string_view rest = text.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#@ ") != std::string_view::npos) {
    return bad("only wss://HOST[:PORT] is allowed (no path, query or user)");
  }
  ServerUrl url;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("unclosed [");
    url.host = std::string(rest.substr(1, close - 1));
    // Brackets hold an IPv6 literal and nothing else: "[abc]" would otherwise come out of
    // to_string() as the DNS name "abc".
    in6_addr addr{};
    if (url.host.find('\0') != std::string::npos ||
        ::inet_pton(AF_INET6, url.host.c_str(), &addr) != 1) {
      return bad("invalid IPv6 address");
    }
    rest = rest.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("expected :PORT after ]");
      port_text = rest.substr(1);
    }
  } else {
    const auto colon = rest.find(':');
    url.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port_text = rest.substr(colon + 1);
    for (char c : url.host) {
      if (!valid_host_char(c)) return bad("invalid character in host");
    }
  }
  if (url.host.empty() || url.host.size() > 253) return bad("missing or too long host");
  if (!port_text.empty() || (!rest.empty() && rest.back() == ':')) {
    unsigned port = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      return bad("port must be 1-65535");
    }
    url.port = static_cast<std::uint16_t>(port);
  }
  return url;
}

Result<EnrollmentToken> parse_enrollment_token(std::string_view text) {
  auto bad = [](const std::string& why) {
    return make_error(Errc::kBadValue, "invalid enrollment token: " + why);
  };
  if (text.size() > kMaxEnrollmentTokenLength) return bad("too long");
  if (text.rfind(kEnrollmentTokenPrefix, 0) != 0) {
    return bad("it must start with \"tether1.\" (copy the whole token)");
  }
  std::string_view rest = text.substr(kEnrollmentTokenPrefix.size());
  const auto dot1 = rest.find('.');
  if (dot1 == std::string_view::npos) return bad("it has too few parts");
  const auto dot2 = rest.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos) return bad("it has too few parts");
  if (rest.find('.', dot2 + 1) != std::string_view::npos) return bad("it has too many parts");

  EnrollmentToken token;
  auto url_bytes = base64url_decode(rest.substr(0, dot1));
  if (!url_bytes.ok()) return bad("the server part is damaged");
  const std::string url(url_bytes->begin(), url_bytes->end());
  auto parsed_url = parse_server_url(url);
  if (!parsed_url.ok()) return bad(parsed_url.error().message);
  token.server_url = parsed_url->to_string();

  token.ca_fingerprint = std::string(rest.substr(dot1 + 1, dot2 - dot1 - 1));
  if (token.ca_fingerprint.size() != 64 || !is_lower_hex(token.ca_fingerprint)) {
    return bad("the CA fingerprint part is damaged");
  }
  token.secret = std::string(rest.substr(dot2 + 1));
  auto secret_bytes = base64url_decode(token.secret);
  if (!secret_bytes.ok() || secret_bytes->size() != kEnrollmentSecretBytes) {
    return bad("the secret part is damaged");
  }
  return token;
}

std::string format_enrollment_token(const EnrollmentToken& token) {
  const std::string& url = token.server_url;
  return std::string(kEnrollmentTokenPrefix) +
         base64url_encode(
             std::span(reinterpret_cast<const std::uint8_t*>(url.data()), url.size())) +
         "." + token.ca_fingerprint + "." + token.secret;
}

}  // namespace tether::protocol
