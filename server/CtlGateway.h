// tetherctl gateway add|list|remove: the gateway registry, through /api/v1/gateways.
#pragma once

#include "common/CommandLine.h"
#include "server/CtlClient.h"

namespace tether::server {

// `args.positional()` starts with "gateway". Returns the exit code (0, 1 error, 2 usage).
[[nodiscard]] int run_gateway_command(const CtlClient& client, const ParsedArgs& args);

}  // namespace tether::server
