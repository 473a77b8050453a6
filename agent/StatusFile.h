// status.json in the state directory: what the running agent is doing, for
// `tether-agent status` (a separate process). Written atomically on every state change of
// the channel (not on heartbeats).
#pragma once

#include <optional>
#include <string>

#include "agent/AgentConfig.h"
#include "agent/UpClient.h"
#include "common/Result.h"

namespace tether::agent {

struct AgentStatus {
  int pid = 0;
  ChannelStatus channel;
  std::string device_name;        // as the server calls us
  std::int64_t next_renewal = 0;  // unix seconds, 0 if not scheduled
  std::string shadow;             // the shadowing session, "" when none
  std::string last_shadow;        // how the last session ended ("" when none has)
  std::int64_t updated_at = 0;
};

[[nodiscard]] Status write_status_file(const StatePaths& paths, const AgentStatus& status);
// nullopt when there is no file; an error when it is corrupt.
[[nodiscard]] Result<std::optional<AgentStatus>> read_status_file(const StatePaths& paths);
// True when `pid` is a live tether-agent process (not a recycled pid).
[[nodiscard]] bool agent_process_alive(int pid);

}  // namespace tether::agent
