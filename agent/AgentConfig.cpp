#include "agent/AgentConfig.h"

namespace tether::agent {
namespace {

constexpr std::int64_t kSecond = 1000;
constexpr std::int64_t kHour = 3600 * kSecond;

}  // namespace

const ConfigSchema& agent_config_schema() {
  static const ConfigSchema schema = {
      {.key = "server.url",
       .type = SettingType::kString,
       .default_value = "",
       .help = "wss://HOST:PORT of the server or gateway; empty: the one enrolled with"},
      {.key = "connection.backoff_base",
       .type = SettingType::kDuration,
       .default_value = "1s",
       .help = "first reconnect delay bound; doubles per failed attempt (full jitter)",
       .min = 100,
       .max = kHour},
      {.key = "connection.backoff_cap",
       .type = SettingType::kDuration,
       .default_value = "5m",
       .help = "largest reconnect delay bound",
       .min = kSecond,
       .max = 24 * kHour},
      {.key = "connection.restart_spread",
       .type = SettingType::kDuration,
       .default_value = "30s",
       .help = "after the server closes with 1012/1001, reconnect at a random time within this",
       .min = 0,
       .max = kHour},
      {.key = "connection.ping_interval",
       .type = SettingType::kDuration,
       .default_value = "30s",
       .help = "ping the server when the channel has been idle this long; hang up after twice",
       .min = kSecond,
       .max = kHour},
      {.key = "connection.connect_timeout",
       .type = SettingType::kDuration,
       .default_value = "20s",
       .help = "give up on a connection attempt (TCP, TLS, upgrade, hello) after this",
       .min = kSecond,
       .max = 10 * 60 * kSecond},
      {.key = "shadow.allowed",
       .type = SettingType::kBool,
       .default_value = "true",
       .help = "whether this device may be shadowed at all"},
      {.key = "shadow.prompt_user",
       .type = SettingType::kBool,
       .default_value = "true",
       .help = "ask the user on the device's display before a session starts"},
      {.key = "shadow.prompt_timeout",
       .type = SettingType::kDuration,
       .default_value = "30s",
       .help = "how long the prompt waits for an answer",
       .min = kSecond,
       .max = 10 * 60 * kSecond},
      {.key = "shadow.prompt_default",
       .type = SettingType::kEnum,
       .default_value = "deny",
       .help = "the answer when the prompt times out",
       .choices = {"allow", "deny"}},
      {.key = "shadow.view_only",
       .type = SettingType::kBool,
       .default_value = "false",
       .help = "drop every input event from viewers (they can only watch)"},
      {.key = "shadow.display",
       .type = SettingType::kString,
       .default_value = "",
       .help = "the X display to shadow, e.g. :0; empty: the active session's, from logind",
       .max = 64},
      {.key = "log.level",
       .type = SettingType::kEnum,
       .default_value = "info",
       .help = "error, warning, notice, info or debug",
       .choices = {"error", "warning", "notice", "info", "debug"}},
  };
  return schema;
}

StatePaths::StatePaths(std::string d)
    : dir(std::move(d)),
      key(dir + "/device.key"),
      cert(dir + "/device.crt"),
      enrollment(dir + "/enrollment.json"),
      trust(dir + "/trust.json"),
      status(dir + "/status.json") {}

}  // namespace tether::agent
