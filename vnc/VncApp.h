// tether-vnc's main: the embedded VNC server for one shadowing session
// (docs/architecture.md, "tether-vnc"; command line in docs/configuration.md). Spawned by
// tether-agent with one end of a socketpair; never listens, never forks. Exit status: 0 when
// the viewer's side closes (or on SIGTERM), 1 for X or setup errors, 2 for usage errors.
#pragma once

namespace tether::vnc {

int tether_vnc_main(int argc, const char* const* argv);

}  // namespace tether::vnc
