#include "common/FileIo.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>

#include "common/UniqueFd.h"

namespace tether {
namespace {

Error errno_error(const std::string& what, const std::string& path, int err) {
  Errc code = Errc::kIo;
  if (err == ENOENT) code = Errc::kNotFound;
  if (err == EACCES || err == EPERM) code = Errc::kPermissionDenied;
  return make_error(code, what + " " + path + ": " + std::strerror(err));
}

std::string dir_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status fsync_dir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return errno_error("cannot open directory", dir, errno);
  if (::fsync(fd.get()) != 0) return errno_error("cannot sync directory", dir, errno);
  return {};
}

}  // namespace

Result<std::string> read_file(const std::string& path, std::size_t max_size, bool no_follow) {
  // O_NONBLOCK: opening a FIFO (or a tty) for reading would otherwise block until a writer
  // appears; such files are refused below, and regular files get blocking reads back.
  int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
  if (no_follow) flags |= O_NOFOLLOW;
  UniqueFd fd(::open(path.c_str(), flags));
  if (!fd) {
    if (errno == ELOOP) {
      return make_error(Errc::kPermissionDenied, "refusing to follow a symlink at " + path);
    }
    return errno_error("cannot open", path, errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_error("cannot stat", path, errno);
  if (!S_ISREG(st.st_mode)) return make_error(Errc::kBadValue, path + " is not a regular file");
  if (const int fl = ::fcntl(fd.get(), F_GETFL); fl >= 0) {
    ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
  }
  if (static_cast<std::size_t>(st.st_size) > max_size) {
    return make_error(Errc::kTooLarge, path + " is " + std::to_string(st.st_size) +
                                           " bytes, more than the " + std::to_string(max_size) +
                                           " allowed");
  }
  // Files in /proc and /sys report size 0: read until EOF, within the same limit.
  std::string out;
  out.resize(st.st_size > 0 ? static_cast<std::size_t>(st.st_size) : 4096);
  std::size_t done = 0;
  while (true) {
    if (done == out.size()) {
      if (st.st_size > 0 || out.size() > max_size) break;
      out.resize(std::min(out.size() * 2, max_size + 1));
    }
    const ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("cannot read", path, errno);
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  if (done > max_size) {
    return make_error(Errc::kTooLarge,
                      path + " is more than the " + std::to_string(max_size) + " bytes allowed");
  }
  out.resize(done);
  return out;
}

namespace {

// A writer killed (SIGKILL, power cut) between creating its temporary file and renaming it
// leaves "<path>.tmp.<pid>.<n>" behind. Before each write, remove those of processes that no
// longer exist, so killed writers cannot pile them up until the disk is full.
void remove_stale_temporaries(const std::string& path) {
  const std::string dir = dir_of(path);
  const auto slash = path.rfind('/');
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp.";
  const std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), &::closedir);
  if (!d) return;
  while (const dirent* e = ::readdir(d.get())) {
    const std::string_view name(e->d_name);
    if (name.size() <= prefix.size() || name.substr(0, prefix.size()) != prefix) continue;
    const std::string rest(name.substr(prefix.size()));
    char* end = nullptr;
    const long pid = std::strtol(rest.c_str(), &end, 10);
    if (end == rest.c_str() || *end != '.' || pid <= 0 || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    ::unlinkat(::dirfd(d.get()), e->d_name, 0);
  }
}

Status write_file_renamed(const std::string& path, std::string_view content, mode_t mode,
                          bool sync) {
  remove_stale_temporaries(path);
  std::random_device rd;
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd) return errno_error("cannot create", tmp, errno);
  auto fail = [&](const std::string& what, int err) -> Status {
    ::unlink(tmp.c_str());
    return errno_error(what, path, err);
  };
  // The umask may have narrowed `mode`; secrets must not end up wider, others exactly `mode`.
  if (::fchmod(fd.get(), mode) != 0) return fail("cannot set mode of", errno);
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write", errno);
    }
    done += static_cast<std::size_t>(n);
  }
  if (sync && ::fsync(fd.get()) != 0) return fail("cannot sync", errno);
  if (::close(fd.release()) != 0) return fail("cannot close", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("cannot rename into place", errno);
  return sync ? fsync_dir(dir_of(path)) : ok_status();
}

}  // namespace

Status write_file_atomic(const std::string& path, std::string_view content, mode_t mode) {
  return write_file_renamed(path, content, mode, true);
}

Status write_file_replace(const std::string& path, std::string_view content, mode_t mode) {
  return write_file_renamed(path, content, mode, false);
}

Status ensure_directory(const std::string& dir, mode_t mode, bool tighten) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) return errno_error("cannot stat", dir, errno);
    const std::string parent = dir_of(dir);
    if (parent != dir && parent != "/" && parent != ".") {
      struct stat pst {};
      if (::stat(parent.c_str(), &pst) != 0) TETHER_TRY(ensure_directory(parent, 0755, false));
    }
    if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) {
      return errno_error("cannot create directory", dir, errno);
    }
    if (::lstat(dir.c_str(), &st) != 0) return errno_error("cannot stat", dir, errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    return make_error(Errc::kBadValue, dir + " exists but is not a directory");
  }
  if (st.st_uid != ::geteuid()) {
    return make_error(Errc::kPermissionDenied,
                      dir + " is owned by uid " + std::to_string(st.st_uid) + ", not by us");
  }
  if ((st.st_mode & 07777 & ~mode) != 0) {
    if (!tighten) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "%04o", st.st_mode & 07777);
      return make_error(Errc::kPermissionDenied, dir + " has mode " + buf + ", wider than allowed");
    }
    if (::chmod(dir.c_str(), mode) != 0) return errno_error("cannot chmod", dir, errno);
  }
  return {};
}

Status check_private_file(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno_error("cannot stat", path, errno);
  if (S_ISLNK(st.st_mode)) {
    return make_error(Errc::kPermissionDenied, path + " is a symlink; refusing to use it");
  }
  if (!S_ISREG(st.st_mode)) return make_error(Errc::kBadValue, path + " is not a regular file");
  if (st.st_uid != ::geteuid()) {
    return make_error(Errc::kPermissionDenied,
                      path + " is owned by uid " + std::to_string(st.st_uid) + ", not by us");
  }
  if ((st.st_mode & 077) != 0) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", st.st_mode & 07777);
    return make_error(Errc::kPermissionDenied, path + " has mode " + buf +
                                                   ": it must not be accessible to group or others"
                                                   " (chmod 600)");
  }
  return {};
}

bool file_exists(const std::string& path) noexcept {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

Status remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return errno_error("cannot remove", path, errno);
  }
  return {};
}

}  // namespace tether
