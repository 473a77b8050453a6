// tetherctl shadow and tetherctl audit (docs/configuration.md, docs/api.md).
//
// `shadow DEVICE [--listen ADDR:PORT] [--view-only] [--monitor NAME] [--json]` creates a
// session (viewer kind "external"), then proxies ONE local TCP connection (any VNC viewer)
// to the session's viewer tunnel. The tunnel is opened at once, since its token is valid for
// shadow.token_ttl only: what the device sends first (the RFB greeting) is held, bounded,
// until the viewer connects. It exits 0 when the viewer leaves (closing the tunnel, which
// ends the session) and 1 when the session ends from the other side.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/CommandLine.h"
#include "common/Result.h"
#include "server/CtlClient.h"

namespace tether::server {

[[nodiscard]] bool is_shadow_command(const std::vector<std::string>& positional);
// Runs `shadow` or `audit`; `resolve` turns a device id or name into an id.
[[nodiscard]] int run_shadow_command(
    const CtlClient& client, const ParsedArgs& args,
    const std::function<Result<std::string>(const std::string&)>& resolve);

}  // namespace tether::server
