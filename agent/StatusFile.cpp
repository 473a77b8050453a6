#include "agent/StatusFile.h"

#include <signal.h>

#include <ctime>

#include "common/FileIo.h"
#include "protocol/JsonFieldReader.h"
#include "protocol/LimitedJsonParser.h"

namespace tether::agent {

using json = nlohmann::json;

Status write_status_file(const StatePaths& paths, const AgentStatus& s) {
  const json doc = {{"pid", s.pid},
                    {"state", channel_state_name(s.channel.state)},
                    {"endpoint", s.channel.endpoint},
                    {"endpoint_index", s.channel.endpoint_index},
                    {"endpoints", s.channel.endpoints},
                    {"via_gateway", s.channel.via_gateway},
                    {"server_reachable", s.channel.server_reachable},
                    {"since", s.channel.since},
                    {"last_error", s.channel.last_error},
                    {"next_attempt", s.channel.next_attempt},
                    {"failures", s.channel.failures},
                    {"device_name", s.device_name},
                    {"next_renewal", s.next_renewal},
                    {"shadow", s.shadow},
                    {"last_shadow", s.last_shadow},
                    {"updated_at", static_cast<std::int64_t>(std::time(nullptr))}};
  return write_file_atomic(paths.status,
                           doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n", 0644);
}

Result<std::optional<AgentStatus>> read_status_file(const StatePaths& paths) {
  if (!file_exists(paths.status)) return std::optional<AgentStatus>{};
  TETHER_ASSIGN_OR_RETURN(std::string text, read_file(paths.status, 64 * 1024, true));
  auto doc = protocol::parse_limited_json(text, protocol::JsonLimits{});
  if (!doc.ok()) return doc.error().context(paths.status + " is corrupt");
  protocol::JsonFieldReader f(*doc, paths.status);
  AgentStatus s;
  s.pid = static_cast<int>(f.integer("pid", 0, 1 << 30));
  const std::string state = f.str("state", 32);
  s.channel.endpoint = f.opt_str("endpoint", 512).value_or("");
  s.channel.endpoint_index =
      static_cast<std::size_t>(f.opt_integer("endpoint_index", 0, 1024).value_or(0));
  s.channel.endpoints = f.str_array("endpoints", 64, 512);
  s.channel.via_gateway = f.opt_boolean("via_gateway", false);
  s.channel.server_reachable = f.opt_boolean("server_reachable", false);
  s.channel.since = f.opt_integer("since", 0, std::int64_t{1} << 40).value_or(0);
  s.channel.last_error = f.opt_str("last_error", 4096, protocol::StringKind::kText).value_or("");
  s.channel.next_attempt = f.opt_integer("next_attempt", 0, std::int64_t{1} << 40).value_or(0);
  s.channel.failures = static_cast<unsigned>(f.opt_integer("failures", 0, 1 << 20).value_or(0));
  s.device_name = f.opt_str("device_name", 256).value_or("");
  s.next_renewal = f.opt_integer("next_renewal", 0, std::int64_t{1} << 40).value_or(0);
  s.shadow = f.opt_str("shadow", 4096, protocol::StringKind::kText).value_or("");
  s.last_shadow = f.opt_str("last_shadow", 4096, protocol::StringKind::kText).value_or("");
  s.updated_at = f.opt_integer("updated_at", 0, std::int64_t{1} << 40).value_or(0);
  if (auto ok = f.finish(); !ok.ok()) return ok.error().context(paths.status + " is corrupt");
  for (auto st : {ChannelState::kStopped, ChannelState::kConnecting, ChannelState::kConnected,
                  ChannelState::kWaiting}) {
    if (state == channel_state_name(st)) s.channel.state = st;
  }
  return std::optional(s);
}

bool agent_process_alive(int pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  auto comm = read_file("/proc/" + std::to_string(pid) + "/comm", 256);
  return comm.ok() && comm->rfind("tether-agent", 0) == 0;
}

}  // namespace tether::agent
