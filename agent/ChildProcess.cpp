#include "agent/ChildProcess.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tether::agent {
namespace {

// What the child reports through the exec-error pipe when it cannot get to exec.
struct ChildFailure {
  int stage;  // index into kStages
  int error;  // errno
};
constexpr const char* kStages[] = {"setpgid", "stdin",  "descriptor", "setgroups",
                                   "setgid",  "setuid", "verify",     "exec"};

[[noreturn]] void child_fail(int fd, int stage) {
  const ChildFailure f{stage, errno};
  // Nothing else can be done if this write fails: the parent then sees an exit code of 127.
  [[maybe_unused]] const ssize_t n = ::write(fd, &f, sizeof f);
  ::_exit(127);
}

void close_from(unsigned int first, unsigned int last) {
  if (first > last) return;
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, first, last, 0) == 0) return;
#endif
  for (unsigned int fd = first; fd <= last && fd < 4096; ++fd) ::close(static_cast<int>(fd));
}

}  // namespace

ChildProcess::ChildProcess(lws_context* ctx, ExitHandler on_exit)
    : kill_timer_(ctx, [this] { kill_group(SIGKILL); }),
      exit_timer_(ctx, [this] { report_exit(); }),
      on_exit_(std::move(on_exit)) {}

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(lws_context* ctx, lws_vhost* vhost,
                                                          const SpawnSpec& spec,
                                                          ExitHandler on_exit) {
  if (spec.argv.empty()) return make_error(Errc::kInvalidArgument, "nothing to run");
  // Everything the child needs is prepared here: between fork and exec it may only make
  // async-signal-safe calls (no allocation, no getgrouplist, no logging).
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  const bool drop = spec.uid.has_value() && ::geteuid() == 0 && *spec.uid != 0;
  std::vector<gid_t> groups;
  if (drop) {
    int n = 64;
    groups.resize(static_cast<std::size_t>(n));
    if (::getgrouplist(spec.user.c_str(), spec.gid, groups.data(), &n) < 0) {
      groups.resize(static_cast<std::size_t>(n));
      if (::getgrouplist(spec.user.c_str(), spec.gid, groups.data(), &n) < 0) n = 0;
    }
    groups.resize(static_cast<std::size_t>(std::max(n, 0)));
    if (groups.empty()) groups.push_back(spec.gid);
  }
  const uid_t uid = drop ? *spec.uid : 0;
  const gid_t gid = spec.gid;

  UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull) return make_error(Errc::kIo, std::string("/dev/null: ") + std::strerror(errno));
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    return make_error(Errc::kIo, std::string("pipe: ") + std::strerror(errno));
  }
  UniqueFd err_read(pipefd[0]);
  // High up, so that making the passed descriptor number 3 cannot clobber it.
  UniqueFd err_write(::fcntl(pipefd[1], F_DUPFD_CLOEXEC, 64));
  ::close(pipefd[1]);
  if (!err_write) return make_error(Errc::kIo, std::string("fcntl: ") + std::strerror(errno));
  const int efd = err_write.get();
  const int pass = spec.pass_fd;
  const char* cwd = spec.cwd.c_str();

  const pid_t pid = ::fork();
  if (pid < 0) return make_error(Errc::kIo, std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // The child. Own process group: the agent ends a session by signalling the group.
    if (::setpgid(0, 0) != 0) child_fail(efd, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD}) ::signal(sig, SIG_DFL);
    if (::dup2(devnull.get(), 0) < 0) child_fail(efd, 1);
    if (pass >= 0) {
      if (pass == 3) {
        const int flags = ::fcntl(3, F_GETFD);
        if (flags < 0 || ::fcntl(3, F_SETFD, flags & ~FD_CLOEXEC) != 0) child_fail(efd, 2);
      } else if (::dup2(pass, 3) < 0) {  // dup2 leaves close-on-exec clear on 3
        child_fail(efd, 2);
      }
    }
    close_from(pass >= 0 ? 4 : 3, static_cast<unsigned>(efd) - 1);
    close_from(static_cast<unsigned>(efd) + 1, ~0U);
    if (drop) {
      if (::setgroups(groups.size(), groups.data()) != 0) child_fail(efd, 3);
      if (::setgid(gid) != 0) child_fail(efd, 4);
      if (::setuid(uid) != 0) child_fail(efd, 5);
      // Verify the drop stuck and cannot be undone.
      if (::getuid() != uid || ::geteuid() != uid || ::getgid() != gid || ::getegid() != gid ||
          ::setuid(0) == 0) {
        errno = EPERM;
        child_fail(efd, 6);
      }
    }
    if (::chdir(cwd) != 0 && ::chdir("/") != 0) {
      // Not fatal: the helpers do not depend on their working directory.
    }
    ::execve(argv[0], argv.data(), envp.data());
    child_fail(efd, 7);
  }

  // The parent.
  ::setpgid(pid, pid);  // also here, so a signal to the group cannot race the child's call
  err_write.reset();
  ChildFailure failure{};
  ssize_t n;
  do {
    n = ::read(err_read.get(), &failure, sizeof failure);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    int status = 0;
    ::waitpid(pid, &status, 0);  // it exits right after writing
    return make_error(Errc::kIo, std::string("cannot start ") + spec.argv[0] + ": " +
                                     kStages[failure.stage & 7] + ": " +
                                     std::strerror(failure.error));
  }

  std::unique_ptr<ChildProcess> self(new ChildProcess(ctx, std::move(on_exit)));
  self->pid_ = pid;
  self->pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!self->pidfd_) {
    const int e = errno;
    self->kill_group(SIGKILL);  // the destructor reaps it
    return make_error(Errc::kIo, std::string("pidfd_open: ") + std::strerror(e));
  }
  ChildProcess* raw = self.get();
  auto watch = LwsFdWatcher::watch(vhost, self->pidfd_.get(), [raw] { raw->on_pidfd_readable(); });
  if (!watch.ok()) {
    self->kill_group(SIGKILL);
    return watch.error();
  }
  self->watch_ = std::move(watch).value();
  return self;
}

ChildProcess::~ChildProcess() {
  kill_timer_.cancel();
  exit_timer_.cancel();
  watch_.reset();
  if (pid_ > 0 && !reaped_) {
    kill_group(SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

void ChildProcess::kill_group(int sig) {
  // While the child is not reaped its pid (and so its group id) cannot be reused.
  if (pid_ > 0 && !reaped_) ::kill(-pid_, sig);
}

void ChildProcess::terminate(std::chrono::milliseconds grace) {
  if (reaped_) return;
  kill_group(SIGTERM);
  kill_timer_.schedule(std::chrono::duration_cast<std::chrono::microseconds>(grace));
}

void ChildProcess::on_pidfd_readable() {
  if (reaped_) return;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return;
  // Whatever the child left in its group goes with it. The zombie is gone now, but the
  // group's id is still held by any member that remains, so it names only our processes.
  ::kill(-pid_, SIGKILL);
  reaped_ = true;
  status_ = status;
  kill_timer_.cancel();
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
