#include "agent/ChildProcess.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace tether::agent {
namespace {

// A record on the report pipe: a failure before exec (stage, errno), or kStarted with the
// helper's pid. The helper's exec closes the last writer, so EOF means it is running.
struct ChildReport {
  int stage;
  int value;
};
constexpr int kStarted = 100;
constexpr const char* kStages[] = {"setpgid", "stdin",        "descriptor", "setgroups", "setgid",
                                   "setuid",  "capabilities", "verify",     "fork",      "exec"};
constexpr int kStageCount = static_cast<int>(sizeof kStages / sizeof kStages[0]);

void report(int fd, int stage, int value) {
  const ChildReport r{stage, value};
  // Nothing else can be done if this write fails: the agent then sees the keeper's exit code.
  [[maybe_unused]] const ssize_t n = ::write(fd, &r, sizeof r);
}

[[noreturn]] void child_fail(int fd, int stage) {
  report(fd, stage, errno);
  ::_exit(127);
}

void close_from(unsigned int first, unsigned int last) {
  if (first > last) return;
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, first, last, 0) == 0) return;
#endif
  for (unsigned int fd = first; fd <= last && fd < 4096; ++fd) ::close(static_cast<int>(fd));
}

// Empties every capability set (permitted, effective, inheritable, ambient). Needed when the
// agent is not root: a change between two non-zero uids keeps the capabilities, and ambient
// ones would even survive exec.
bool drop_capabilities() {
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return false;
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  return ::syscall(SYS_capset, &header, data) == 0;
}

bool has_capabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0) return true;
  for (const auto& d : data) {
    if (d.effective != 0 || d.permitted != 0 || d.inheritable != 0) return true;
  }
  return ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_SETUID, 0, 0) == 1;
}

std::int64_t now_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// The keeper: runs as the helper's user, waits for the helper and ends it when the agent
// says so (a grace period in ms on `control`) or goes away (EOF: at once). Being the same
// user as the helper, it can signal it without CAP_KILL in the agent. Exits the way the
// helper did. Only system calls here: this is a forked copy of the agent.
[[noreturn]] void keep(pid_t helper, int control) {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, helper, 0));
  std::int64_t deadline = -1;  // when SIGKILL follows the SIGTERM
  bool control_open = true;
  int status = 0;
  for (;;) {
    pollfd fds[2] = {{pidfd, POLLIN, 0}, {control_open ? control : -1, POLLIN, 0}};
    int timeout = -1;
    if (deadline >= 0) timeout = static_cast<int>(deadline > now_ms() ? deadline - now_ms() : 0);
    const int n = ::poll(fds, 2, pidfd >= 0 ? timeout : 50);
    if (n < 0 && errno != EINTR) break;
    if (deadline >= 0 && now_ms() >= deadline) {
      ::kill(-helper, SIGKILL);
      deadline = -1;
    }
    if (control_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      std::uint32_t grace_ms = 0;
      const ssize_t r = ::read(control, &grace_ms, sizeof grace_ms);
      if (r == static_cast<ssize_t>(sizeof grace_ms) && grace_ms > 0) {
        ::kill(-helper, SIGTERM);
        deadline = now_ms() + grace_ms;
      } else if (r != -1 || errno != EINTR) {
        if (r <= 0) control_open = false;
        ::kill(-helper, SIGKILL);
      }
    }
    if (::waitpid(helper, &status, WNOHANG) == helper) break;
  }
  // Whatever the helper left in its group goes with it; as their subreaper the keeper reaps
  // them too (for up to a second), so no zombie holds the group's id after it is gone.
  ::kill(-helper, SIGKILL);
  for (int i = 0; i < 100; ++i) {
    const pid_t gone = ::waitpid(-1, nullptr, WNOHANG);
    if (gone < 0) break;  // ECHILD: nothing left
    if (gone == 0) {
      const timespec pause{0, 10 * 1000 * 1000};
      ::nanosleep(&pause, nullptr);
    }
  }
  if (WIFEXITED(status)) ::_exit(WEXITSTATUS(status));
  const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
  // Die the same way, but never by a signal that would dump the keeper's (the agent's) memory.
  for (int plain : {SIGTERM, SIGKILL, SIGINT, SIGHUP, SIGPIPE, SIGALRM, SIGUSR1, SIGUSR2}) {
    if (sig == plain) {
      ::signal(sig, SIG_DFL);
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, sig);
      ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
      ::kill(::getpid(), sig);
    }
  }
  ::_exit(128 + sig);
}

}  // namespace

ChildProcess::ChildProcess(lws_context* ctx, ExitHandler on_exit)
    : exit_timer_(ctx, [this] { report_exit(); }), on_exit_(std::move(on_exit)) {}

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(lws_context* ctx, lws_vhost* vhost,
                                                          const SpawnSpec& spec,
                                                          ExitHandler on_exit) {
  if (spec.argv.empty()) return make_error(Errc::kInvalidArgument, "nothing to run");
  // Everything the children need is prepared here: between fork and exec they make system
  // calls only (no allocation, no getgrouplist, no logging).
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  const bool change_user = spec.uid.has_value() && *spec.uid != ::geteuid();
  std::vector<gid_t> groups;
  if (change_user) {
    int n = 64;
    groups.resize(static_cast<std::size_t>(n));
    if (::getgrouplist(spec.user.c_str(), spec.gid, groups.data(), &n) < 0) {
      groups.resize(static_cast<std::size_t>(n));
      if (::getgrouplist(spec.user.c_str(), spec.gid, groups.data(), &n) < 0) n = 0;
    }
    groups.resize(static_cast<std::size_t>(std::max(n, 0)));
    if (groups.empty()) groups.push_back(spec.gid);
  }
  const uid_t uid = change_user ? *spec.uid : ::geteuid();
  const gid_t gid = spec.gid;

  UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull) return make_error(Errc::kIo, std::string("/dev/null: ") + std::strerror(errno));
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    return make_error(Errc::kIo, std::string("pipe: ") + std::strerror(errno));
  }
  UniqueFd report_read(pipefd[0]);
  // High up, so that making the passed descriptor number 3 cannot clobber them.
  UniqueFd report_write(::fcntl(pipefd[1], F_DUPFD_CLOEXEC, 64));
  ::close(pipefd[1]);
  if (!report_write) return make_error(Errc::kIo, std::string("fcntl: ") + std::strerror(errno));
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    return make_error(Errc::kIo, std::string("pipe: ") + std::strerror(errno));
  }
  UniqueFd control_read(::fcntl(pipefd[0], F_DUPFD_CLOEXEC, 64));
  ::close(pipefd[0]);
  UniqueFd control_write(pipefd[1]);
  if (!control_read) return make_error(Errc::kIo, std::string("fcntl: ") + std::strerror(errno));
  const int rfd = report_write.get();
  const int cfd = control_read.get();
  const int low = std::min(rfd, cfd);
  const int high = std::max(rfd, cfd);
  const int pass = spec.pass_fd;
  const char* cwd = spec.cwd.c_str();

  const pid_t pid = ::fork();
  if (pid < 0) return make_error(Errc::kIo, std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // The keeper. Its own process group, so nothing aimed at the agent's group reaches it.
    if (::setpgid(0, 0) != 0) child_fail(rfd, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD}) ::signal(sig, SIG_DFL);
    if (::dup2(devnull.get(), 0) < 0) child_fail(rfd, 1);
    if (pass >= 0) {
      if (pass == 3) {
        const int flags = ::fcntl(3, F_GETFD);
        if (flags < 0 || ::fcntl(3, F_SETFD, flags & ~FD_CLOEXEC) != 0) child_fail(rfd, 2);
      } else if (::dup2(pass, 3) < 0) {  // dup2 leaves close-on-exec clear on 3
        child_fail(rfd, 2);
      }
    }
    close_from(pass >= 0 ? 4 : 3, static_cast<unsigned>(low) - 1);
    close_from(static_cast<unsigned>(low) + 1, static_cast<unsigned>(high) - 1);
    close_from(static_cast<unsigned>(high) + 1, ~0U);
    if (change_user) {
      if (::setgroups(groups.size(), groups.data()) != 0) child_fail(rfd, 3);
      if (::setgid(gid) != 0) child_fail(rfd, 4);
      if (::setuid(uid) != 0) child_fail(rfd, 5);
    }
    if (uid != 0) {
      if (!drop_capabilities()) child_fail(rfd, 6);
      // Verify the drop stuck and cannot be undone.
      if (::getuid() != uid || ::geteuid() != uid ||
          (change_user && (::getgid() != gid || ::getegid() != gid)) || has_capabilities() ||
          ::setuid(0) == 0) {
        errno = EPERM;
        child_fail(rfd, 7);
      }
    }
    if (::chdir(cwd) != 0 && ::chdir("/") != 0) {
      // Not fatal: the helpers do not depend on their working directory.
    }
    // Orphans of the helper come to the keeper, which reaps them.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    const pid_t keeper = ::getpid();
    const pid_t helper = ::fork();
    if (helper < 0) child_fail(rfd, 8);
    if (helper == 0) {
      // The helper: its own group (ended as a whole), and gone if the keeper goes.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
      if (::getppid() != keeper) ::_exit(127);
      ::execve(argv[0], argv.data(), envp.data());
      child_fail(rfd, 9);
    }
    ::setpgid(helper, helper);  // also here, so a signal to the group cannot race its call
    report(rfd, kStarted, helper);
    ::close(rfd);
    if (pass >= 0) ::close(3);  // the helper's alone: its peer must see EOF when it exits
    keep(helper, cfd);
  }

  // The agent.
  report_write.reset();
  control_read.reset();
  ChildReport r{};
  ChildReport failure{-1, 0};
  pid_t helper = -1;
  for (;;) {
    const ssize_t n = ::read(report_read.get(), &r, sizeof r);
    if (n < 0 && errno == EINTR) continue;
    if (n != static_cast<ssize_t>(sizeof r)) break;
    if (r.stage == kStarted) {
      helper = r.value;
    } else {
      failure = r;
    }
  }
  if (failure.stage >= 0 || helper < 0) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (failure.stage < 0) {
      return make_error(Errc::kIo, std::string("cannot start ") + spec.argv[0] + ": " +
                                       ChildProcess::describe_status(status));
    }
    const int stage = failure.stage >= 0 && failure.stage < kStageCount ? failure.stage : 0;
    std::string message = std::string("cannot start ") + spec.argv[0] + ": " + kStages[stage] +
                          ": " + std::strerror(failure.value);
    if (failure.value == EPERM && stage >= 3 && stage <= 5) {
      message += " (starting helpers as the session's user needs CAP_SETUID and CAP_SETGID)";
    }
    return make_error(Errc::kIo, message);
  }

  std::unique_ptr<ChildProcess> self(new ChildProcess(ctx, std::move(on_exit)));
  self->pid_ = pid;
  self->helper_pid_ = helper;
  self->control_ = std::move(control_write);
  self->pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!self->pidfd_) {
    const int e = errno;
    return make_error(Errc::kIo, std::string("pidfd_open: ") + std::strerror(e));
  }
  ChildProcess* raw = self.get();
  auto watch = LwsFdWatcher::watch(vhost, self->pidfd_.get(), [raw] { raw->on_pidfd_readable(); });
  if (!watch.ok()) return watch.error();  // the destructor ends and reaps both
  self->watch_ = std::move(watch).value();
  return self;
}

ChildProcess::~ChildProcess() {
  exit_timer_.cancel();
  watch_.reset();
  // EOF on the control pipe: the keeper kills the helper at once and exits.
  control_.reset();
  if (pid_ > 0 && !reaped_) {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

void ChildProcess::terminate(std::chrono::milliseconds grace) {
  if (reaped_ || !control_) return;
  const auto ms = static_cast<std::uint32_t>(std::max<std::int64_t>(1, grace.count()));
  // Four bytes on a pipe are written whole; a keeper that is gone makes this fail (EPIPE,
  // and SIGPIPE is ignored by the agent), which is fine: its exit is on its way.
  if (::write(control_.get(), &ms, sizeof ms) != static_cast<ssize_t>(sizeof ms)) {
    control_.reset();
  }
}

void ChildProcess::on_pidfd_readable() {
  if (reaped_) return;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return;
  reaped_ = true;
  status_ = status;
  control_.reset();
  // Stop watching and report from a timer, not from inside the watcher's own callback; the
  // pidfd stays readable until then, and reaped_ makes those calls no-ops.
  exit_timer_.schedule(std::chrono::microseconds(0));
}

void ChildProcess::report_exit() {
  watch_.reset();
  if (on_exit_) {
    auto handler = std::move(on_exit_);
    on_exit_ = nullptr;
    handler(status_);
  }
}

std::string ChildProcess::describe_status(int status) {
  if (WIFEXITED(status)) return "exited with " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "ended (status " + std::to_string(status) + ")";
}

}  // namespace tether::agent
