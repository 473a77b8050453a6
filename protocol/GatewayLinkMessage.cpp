#include "protocol/GatewayLinkMessage.h"

#include <nlohmann/json.hpp>

#include "protocol/JsonFieldReader.h"
#include "protocol/LimitedJsonParser.h"

namespace tether::protocol {
namespace {

using nlohmann::json;

constexpr std::int64_t kMaxConn = (std::int64_t{1} << 53) - 1;  // exact in a JSON number
constexpr std::size_t kMaxUpText = 256 * 1024;
constexpr std::size_t kMaxHttpBody = 64 * 1024;

JsonLimits link_limits() {
  JsonLimits limits;
  limits.max_bytes = kLinkMaxBytes;
  limits.max_depth = 4;
  limits.max_string_bytes = kMaxUpText;
  limits.max_key_bytes = 32;
  limits.max_array_items = kLinkAllowChunk;
  limits.max_object_members = 16;
  limits.max_values = kLinkAllowChunk + 64;
  return limits;
}

template <typename T>
Result<LinkMessage> done(JsonFieldReader& f, T value) {
  TETHER_TRY(f.finish());
  return LinkMessage(std::move(value));
}

std::uint64_t conn_of(JsonFieldReader& f) {
  return static_cast<std::uint64_t>(f.integer("conn", 1, kMaxConn));
}

}  // namespace

std::string_view link_message_type(const LinkMessage& message) noexcept {
  static constexpr std::string_view kNames[] = {
      "hello",  "connected", "closed",      "http",        "tunnel_event", "allow",
      "revoke", "close",     "http_result", "tunnel_open", "tunnel_close", "up"};
  return kNames[message.index()];
}

Result<LinkMessage> decode_link_message(std::string_view text) {
  TETHER_ASSIGN_OR_RETURN(json doc, parse_limited_json(text, link_limits()));
  if (!doc.is_object()) return make_error(Errc::kSyntax, "a link message must be a JSON object");
  JsonFieldReader f(doc, "link");
  const std::int64_t v = f.integer("v", 0, 1000);
  const std::string type = f.str("t", 32, StringKind::kToken);
  TETHER_TRY(f.finish());
  if (v != kLinkVersion) {
    return make_error(Errc::kBadVersion, "link version " + std::to_string(v) +
                                             " (this side speaks " + std::to_string(kLinkVersion) +
                                             ")");
  }
  if (type == "hello") {
    LinkHello m;
    m.gateway = f.str("gateway", 64, StringKind::kToken);
    m.version = f.str("version", 64);
    m.devices = static_cast<std::uint64_t>(f.integer("devices", 0, kMaxConn));
    return done(f, std::move(m));
  }
  if (type == "connected") {
    LinkConnected m;
    m.conn = conn_of(f);
    m.device = f.str("device", 64, StringKind::kHex64);
    m.address = f.str("address", 128);
    return done(f, std::move(m));
  }
  if (type == "closed") return done(f, LinkClosed{conn_of(f)});
  if (type == "http") {
    LinkHttp m;
    m.id = static_cast<std::uint64_t>(f.integer("id", 1, kMaxConn));
    m.method = f.str("method", 16, StringKind::kToken);
    m.path = f.str("path", 1024);
    m.body = f.str("body", kMaxHttpBody, StringKind::kText);
    m.address = f.str("address", 128);
    return done(f, std::move(m));
  }
  if (type == "tunnel_event") {
    LinkTunnelEvent m;
    m.session = f.str("session", 64, StringKind::kToken);
    m.event = f.str("event", 32, StringKind::kToken);
    m.reason = f.opt_str("reason", 64, StringKind::kToken).value_or("");
    return done(f, std::move(m));
  }
  if (type == "allow") {
    LinkAllow m;
    m.reset = f.boolean("reset");
    m.done = f.boolean("done");
    m.devices = f.str_array("devices", kLinkAllowChunk, 64, StringKind::kHex64, true);
    return done(f, std::move(m));
  }
  if (type == "revoke") return done(f, LinkRevoke{f.str("device", 64, StringKind::kHex64)});
  if (type == "close") {
    LinkClose m;
    m.conn = conn_of(f);
    m.code = static_cast<int>(f.integer("code", 1000, 4999));
    m.reason = f.opt_str("reason", 120).value_or("");
    return done(f, std::move(m));
  }
  if (type == "http_result") {
    LinkHttpResult m;
    m.id = static_cast<std::uint64_t>(f.integer("id", 1, kMaxConn));
    m.status = static_cast<int>(f.integer("status", 100, 599));
    m.content_type = f.opt_str("content_type", 128).value_or("application/json");
    m.body = f.str("body", kMaxHttpBody, StringKind::kText);
    return done(f, std::move(m));
  }
  if (type == "tunnel_open") {
    LinkTunnelOpen m;
    m.session = f.str("session", 64, StringKind::kToken);
    m.device = f.str("device", 64, StringKind::kHex64);
    m.device_token = f.str("device_token", 128, StringKind::kToken);
    m.viewer_token = f.str("viewer_token", 128, StringKind::kToken);
    m.ttl = f.integer("ttl", 1, 3600);
    return done(f, std::move(m));
  }
  if (type == "tunnel_close") {
    LinkTunnelClose m;
    m.session = f.str("session", 64, StringKind::kToken);
    m.reason = f.opt_str("reason", 64, StringKind::kToken).value_or("");
    return done(f, std::move(m));
  }
  if (type == "up") {
    LinkUp m;
    m.conn = conn_of(f);
    m.text = f.str("text", kMaxUpText, StringKind::kText);
    return done(f, std::move(m));
  }
  return make_error(Errc::kUnknownType, "unknown link message type \"" + type + "\"");
}

std::string encode_link_message(const LinkMessage& message) {
  json j = {{"v", kLinkVersion}, {"t", std::string(link_message_type(message))}};
  std::visit(
      [&j](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, LinkHello>) {
          j["gateway"] = m.gateway;
          j["version"] = m.version;
          j["devices"] = m.devices;
        } else if constexpr (std::is_same_v<T, LinkConnected>) {
          j["conn"] = m.conn;
          j["device"] = m.device;
          j["address"] = m.address;
        } else if constexpr (std::is_same_v<T, LinkClosed>) {
          j["conn"] = m.conn;
        } else if constexpr (std::is_same_v<T, LinkHttp>) {
          j["id"] = m.id;
          j["method"] = m.method;
          j["path"] = m.path;
          j["body"] = m.body;
          j["address"] = m.address;
        } else if constexpr (std::is_same_v<T, LinkTunnelEvent>) {
          j["session"] = m.session;
          j["event"] = m.event;
          if (!m.reason.empty()) j["reason"] = m.reason;
        } else if constexpr (std::is_same_v<T, LinkAllow>) {
          j["reset"] = m.reset;
          j["done"] = m.done;
          j["devices"] = m.devices;
        } else if constexpr (std::is_same_v<T, LinkRevoke>) {
          j["device"] = m.device;
        } else if constexpr (std::is_same_v<T, LinkClose>) {
          j["conn"] = m.conn;
          j["code"] = m.code;
          j["reason"] = m.reason;
        } else if constexpr (std::is_same_v<T, LinkHttpResult>) {
          j["id"] = m.id;
          j["status"] = m.status;
          j["content_type"] = m.content_type;
          j["body"] = m.body;
        } else if constexpr (std::is_same_v<T, LinkTunnelOpen>) {
          j["session"] = m.session;
          j["device"] = m.device;
          j["device_token"] = m.device_token;
          j["viewer_token"] = m.viewer_token;
          j["ttl"] = m.ttl;
        } else if constexpr (std::is_same_v<T, LinkTunnelClose>) {
          j["session"] = m.session;
          if (!m.reason.empty()) j["reason"] = m.reason;
        } else if constexpr (std::is_same_v<T, LinkUp>) {
          j["conn"] = m.conn;
          j["text"] = m.text;
        }
      },
      message);
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace tether::protocol
