// tetherctl's commands: argument handling, name resolution and output (tables or JSON).
#pragma once

namespace tether::server {

// Runs tetherctl; returns the exit code (0 ok, 1 error, 2 usage).
[[nodiscard]] int run_ctl(int argc, const char* const* argv);

}  // namespace tether::server
