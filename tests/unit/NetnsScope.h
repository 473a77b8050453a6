// Runs part of a test in a fresh network namespace: the calling thread moves into a new
// network and mount namespace, with a sysfs of the new network namespace mounted at
// sys_root() (the process's /sys keeps showing the old one: sysfs shows the namespace of
// whoever mounted it). Everything goes back on destruction. Needs root (CAP_SYS_ADMIN); when
// it cannot, ok() is false and reason() says why, for GTEST_SKIP.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "Subprocess.h"

namespace tether::testing {

// Runs argv (argv[0] a full path) to completion with no input; returns the exit code (-1 if
// it could not run or was killed) and its standard output. Like run_command, minus stdin
// handling, which clang-tidy's analyzer misreads in Subprocess.h.
inline CommandResult run_program(const std::vector<std::string>& argv) {
  CommandResult result;
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return result;
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  (void)std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    const int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, STDIN_FILENO);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  std::array<char, 4096> buf{};
  while (pid > 0) {
    const ssize_t n = ::read(out[0], buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buf.data(), static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  if (pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  }
  return result;
}

class NetnsScope {
 public:
  NetnsScope() {
    std::array<char, 4096> cwd{};
    if (::getcwd(cwd.data(), cwd.size()) != nullptr) cwd_ = cwd.data();
    old_net_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    old_mnt_ = ::open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (old_net_ < 0 || old_mnt_ < 0) {
      reason_ = std::string("cannot open /proc/thread-self/ns: ") + std::strerror(errno);
      return;
    }
    if (::unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) {
      reason_ = std::string("cannot create network namespaces (unshare: ") + std::strerror(errno) +
                "; the test needs root)";
      return;
    }
    entered_ = true;
    // Private: the sysfs mount below must not propagate back into the host's namespace.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      reason_ = std::string("cannot make mounts private: ") + std::strerror(errno);
      return;
    }
    std::string tmpl = (std::filesystem::temp_directory_path() / "tether-sys-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      reason_ = std::string("mkdtemp: ") + std::strerror(errno);
      return;
    }
    sys_root_ = tmpl;
    if (::mount("sysfs", sys_root_.c_str(), "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) !=
        0) {
      reason_ = std::string("cannot mount a sysfs for the new namespace: ") + std::strerror(errno);
      return;
    }
    mounted_ = true;
    if (auto ip = find_program("ip")) {
      ip_ = *ip;
    } else {
      reason_ = "the ip program (iproute2) is not installed";
      return;
    }
    ok_ = true;
  }

  ~NetnsScope() {
    if (mounted_) ::umount2(sys_root_.c_str(), MNT_DETACH);
    if (entered_) {
      if (::setns(old_mnt_, CLONE_NEWNS) != 0) ADD_FAILURE() << "cannot return to the mount ns";
      if (::setns(old_net_, CLONE_NEWNET) != 0) ADD_FAILURE() << "cannot return to the net ns";
      if (!cwd_.empty() && ::chdir(cwd_.c_str()) != 0) ADD_FAILURE() << "cannot chdir back";
    }
    if (!sys_root_.empty()) ::rmdir(sys_root_.c_str());
    if (old_net_ >= 0) ::close(old_net_);
    if (old_mnt_ >= 0) ::close(old_mnt_);
  }
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] const std::string& reason() const { return reason_; }
  [[nodiscard]] const std::string& sys_root() const { return sys_root_; }

  // Runs `ip ARGS...` in the namespace; returns its output, failing the test on a non-zero
  // exit.
  std::string ip(const std::vector<std::string>& args) {
    std::vector<std::string> argv{ip_};
    argv.insert(argv.end(), args.begin(), args.end());
    const CommandResult r = run_program(argv);
    std::string line;
    for (const auto& a : argv) line += a + " ";
    EXPECT_EQ(r.exit_code, 0) << line << "failed";
    return r.output;
  }

 private:
  bool ok_ = false;
  bool entered_ = false;
  bool mounted_ = false;
  int old_net_ = -1;
  int old_mnt_ = -1;
  std::string cwd_;
  std::string sys_root_;
  std::string ip_;
  std::string reason_;
};

}  // namespace tether::testing
