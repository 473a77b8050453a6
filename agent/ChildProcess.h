// A helper process of a shadowing session (tether-vnc, tether-shadow-ui): fork+exec with an
// argv and a clean environment (never a shell), in its own process group, optionally as
// another user, with one inherited descriptor and no capabilities.
//
// Between the agent and the helper sits a keeper: a forked copy of the agent that has become
// the helper's user, waits for the helper and ends it when the agent writes a grace period
// on a pipe, or at once when that pipe closes (the agent ended the session or died). So the
// agent needs no CAP_KILL to end a helper that runs as another user. The keeper exits as the
// helper did; its exit is watched on the lws loop through a pidfd, so nothing ever blocks in
// waitpid while the agent runs.
#pragma once

#include <libwebsockets.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/LwsFdWatcher.h"
#include "common/LwsLoop.h"
#include "common/Result.h"
#include "common/UniqueFd.h"

namespace tether::agent {

struct SpawnSpec {
  std::vector<std::string> argv;  // argv[0] is the path to exec
  std::vector<std::string> env;   // the whole environment, "NAME=value"
  // Becomes descriptor 3 in the child (close-on-exec cleared there only); -1 for none.
  int pass_fd = -1;
  // Run as this user (initgroups, setgid, setuid, verified) when it is not the agent's: needs
  // root or CAP_SETUID and CAP_SETGID. Any other uid than 0 ends with no capabilities.
  std::optional<uid_t> uid;
  gid_t gid = 0;
  std::string user;  // for the supplementary groups
  std::string cwd = "/";
};

class ChildProcess {
 public:
  // The child's wait status (as from waitpid), delivered once, from a timer on the loop. The
  // handler must not destroy the ChildProcess synchronously (defer it).
  using ExitHandler = std::function<void(int status)>;

  // `vhost` must list the fd-watcher protocol.
  [[nodiscard]] static Result<std::unique_ptr<ChildProcess>> spawn(lws_context* ctx,
                                                                   lws_vhost* vhost,
                                                                   const SpawnSpec& spec,
                                                                   ExitHandler on_exit);
  // The helper's process group is killed (SIGKILL) and the keeper reaped: no leftovers.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // SIGTERM to the helper's process group, SIGKILL after `grace` if it is still there.
  void terminate(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));
  // The helper's pid, which is also its process group's id.
  [[nodiscard]] pid_t pid() const noexcept { return helper_pid_; }
  [[nodiscard]] bool running() const noexcept { return !reaped_; }

  // "exited with 1", "killed by signal 15".
  [[nodiscard]] static std::string describe_status(int status);

 private:
  ChildProcess(lws_context* ctx, ExitHandler on_exit);
  void on_pidfd_readable();
  void report_exit();

  pid_t pid_ = -1;  // the keeper
  pid_t helper_pid_ = -1;
  UniqueFd control_;  // write end of the keeper's control pipe
  UniqueFd pidfd_;
  std::unique_ptr<LwsFdWatcher> watch_;
  LwsTimer exit_timer_;
  ExitHandler on_exit_;
  bool reaped_ = false;
  int status_ = 0;
};

}  // namespace tether::agent
