// Which X authority file an X client of the session's user uses. The agent cannot always
// tell which of the candidates is the session's (a file in a 0700 directory is invisible to
// it), so it hands them all on and the helpers (tether-vnc, tether-shadow-ui), running as
// that user, take the first they can read. Plain libc: tether-shadow-ui links nothing else.
// Include it before any Xlib header (Xlib #defines Status, which common/Result.h declares).
#pragma once

#include <string>
#include <vector>

#include "common/Result.h"

namespace tether::vnc {

// Sets XAUTHORITY to the first of `files` this process can read. An empty list leaves
// XAUTHORITY as it is. None readable: XAUTHORITY is left as it is too, and the error
// (kNotFound) names them all: "cannot read F" or "cannot read any of F1, F2".
// (tether::Status is spelled Result<void> so that files that also include Xlib compile.)
[[nodiscard]] Result<void> use_first_readable_xauthority(const std::vector<std::string>& files);

}  // namespace tether::vnc
