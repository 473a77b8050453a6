#include "protocol/GatewayJoinToken.h"

#include <span>

#include <nlohmann/json.hpp>

#include "common/Base64.h"
#include "common/Hex.h"
#include "protocol/EnrollmentToken.h"
#include "protocol/JsonFieldReader.h"
#include "protocol/LimitedJsonParser.h"

namespace tether::protocol {
namespace {

JsonLimits token_limits() {
  JsonLimits limits;
  limits.max_bytes = kMaxGatewayJoinTokenLength;
  limits.max_depth = 2;
  limits.max_string_bytes = 512;
  limits.max_key_bytes = 16;
  limits.max_array_items = 16;
  limits.max_object_members = 16;
  limits.max_values = 64;
  return limits;
}

}  // namespace

bool valid_gateway_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxGatewayNameLength) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

Result<std::string> canonical_join_server_url(std::string_view text) {
  constexpr std::string_view kHttps = "https://";
  std::string wss(text);
  if (text.rfind(kHttps, 0) == 0) wss = "wss://" + std::string(text.substr(kHttps.size()));
  TETHER_ASSIGN_OR_RETURN(ServerUrl url, parse_server_url(wss));
  return url.to_string();
}

Result<GatewayJoinToken> parse_gateway_join_token(std::string_view text) {
  auto bad = [](const std::string& why) {
    return make_error(Errc::kBadValue, "invalid gateway join token: " + why);
  };
  if (text.size() > kMaxGatewayJoinTokenLength) return bad("too long");
  if (text.rfind(kGatewayJoinTokenPrefix, 0) != 0) {
    return bad("it must start with \"tether-gw1.\" (copy the whole token)");
  }
  auto bytes = base64url_decode(text.substr(kGatewayJoinTokenPrefix.size()));
  if (!bytes.ok()) return bad("it is damaged (not base64url)");
  const std::string_view doc_text(reinterpret_cast<const char*>(bytes->data()), bytes->size());
  auto doc = parse_limited_json(doc_text, token_limits());
  if (!doc.ok() || !doc->is_object()) return bad("it is damaged (not a JSON object)");
  JsonFieldReader f(*doc, "token");
  const auto version = f.integer("v", 1, 1);
  GatewayJoinToken token;
  token.name = f.str("n", kMaxGatewayNameLength, StringKind::kToken);
  const std::string url = f.str("u", 300, StringKind::kSingleLine);
  token.ca_fingerprint = f.str("f", 64, StringKind::kHex64);
  token.secret = f.str("s", 64, StringKind::kToken);
  if (auto status = f.finish(); !status.ok()) return bad(status.error().message);
  (void)version;
  if (!valid_gateway_name(token.name)) return bad("the gateway name is not [a-z0-9-]{1,32}");
  auto canonical = canonical_join_server_url(url);
  if (!canonical.ok()) return bad(canonical.error().message);
  token.server_url = std::move(canonical).value();
  auto secret = base64url_decode(token.secret);
  if (!secret.ok() || secret->size() != kGatewayJoinSecretBytes ||
      base64url_encode(*secret) != token.secret) {
    return bad("the secret is damaged");
  }
  return token;
}

std::string format_gateway_join_token(const GatewayJoinToken& token) {
  const nlohmann::json doc = {{"v", 1},
                              {"n", token.name},
                              {"u", token.server_url},
                              {"f", token.ca_fingerprint},
                              {"s", token.secret}};
  const std::string text = doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return std::string(kGatewayJoinTokenPrefix) +
         base64url_encode(
             std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

}  // namespace tether::protocol
