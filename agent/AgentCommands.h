// The tether-agent command line: `run` (default), `register`, `status`, `cert-info`.
#pragma once

namespace tether::agent {

// Parses argv and runs the subcommand; returns the exit code (0 ok, 1 failure, 2 usage).
[[nodiscard]] int agent_main(int argc, const char* const* argv);

}  // namespace tether::agent
