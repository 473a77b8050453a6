// tetherctl user add|list|remove: the web app's users, through /api/v1/users.
#pragma once

#include "common/CommandLine.h"
#include "server/CtlClient.h"

namespace tether::server {

// `args.positional()` starts with "user". Returns the exit code (0, 1 error, 2 usage).
[[nodiscard]] int run_user_command(const CtlClient& client, const ParsedArgs& args);

}  // namespace tether::server
