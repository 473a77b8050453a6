#include "vnc/Xauthority.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>

namespace tether::vnc {

Result<void> use_first_readable_xauthority(const std::vector<std::string>& files) {
  if (files.empty()) return ok_status();
  const auto readable = std::find_if(files.begin(), files.end(), [](const std::string& file) {
    return ::access(file.c_str(), R_OK) == 0;
  });
  if (readable == files.end()) {
    std::string names;
    for (const auto& file : files) names += (names.empty() ? "" : ", ") + file;
    return make_error(Errc::kNotFound,
                      "cannot read " + std::string(files.size() > 1 ? "any of " : "") + names);
  }
  ::setenv("XAUTHORITY", readable->c_str(), 1);
  return ok_status();
}

}  // namespace tether::vnc
