// tetherctl's LAN commands: scan, online, wake and auto-register (docs/configuration.md).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/CommandLine.h"
#include "common/Result.h"
#include "server/CtlClient.h"

namespace tether::server {

// True for the commands run_lan_command() runs.
[[nodiscard]] bool is_lan_command(const std::vector<std::string>& positional);

// `resolve` turns an ID argument (full id, prefix, name) into a full device id.
[[nodiscard]] int run_lan_command(
    const CtlClient& client, const ParsedArgs& args,
    const std::function<Result<std::string>(const std::string&)>& resolve);

}  // namespace tether::server
