// File reading and crash-safe writing. Every write of state goes through write_file_atomic:
// a reader (or a restart after power loss) sees the old content or the new, never a mix.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "common/Result.h"

namespace tether {

// Reads a whole regular file of at most `max_size` bytes. Errors name the file: kNotFound,
// kPermissionDenied, kTooLarge, kIo. Refuses symlinks when `no_follow` is set.
[[nodiscard]] Result<std::string> read_file(const std::string& path,
                                            std::size_t max_size = 1024 * 1024,
                                            bool no_follow = false);

// Writes `content` to a temporary file beside `path` with `mode`, fsyncs it, renames it over
// `path` and fsyncs the directory. On any failure the temporary file is removed and `path`
// keeps its old content.
// Temporary files left beside `path` by writers that were killed are removed first.
[[nodiscard]] Status write_file_atomic(const std::string& path, std::string_view content,
                                       mode_t mode);
// As write_file_atomic, but without the fsyncs: for files rewritten often from the event loop
// that only describe the moment (counters), where waiting for the disk would stall the loop
// and losing the last update to a power cut costs nothing.
[[nodiscard]] Status write_file_replace(const std::string& path, std::string_view content,
                                        mode_t mode);

// Creates `dir` (and missing parents) if needed and makes sure it is a directory with at most
// `mode` permissions, owned by us. An existing directory with wider permissions is an error
// unless `tighten` is set, in which case it is chmod-ed.
[[nodiscard]] Status ensure_directory(const std::string& dir, mode_t mode, bool tighten = true);

// Checks that `path` is a regular file (not a symlink), owned by us, readable by nobody else.
// Used before loading private keys and secrets.
[[nodiscard]] Status check_private_file(const std::string& path);

[[nodiscard]] bool file_exists(const std::string& path) noexcept;

// Removes a file if present; missing is not an error.
[[nodiscard]] Status remove_file(const std::string& path);

}  // namespace tether
