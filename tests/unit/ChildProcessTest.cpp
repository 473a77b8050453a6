// ChildProcess on a real lws loop: argv and environment exactly as given, one passed
// descriptor as fd 3 and nothing else inherited, privileges dropped when root, exit reported
// through the pidfd, the whole process group gone after terminate().
#include "agent/ChildProcess.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <pwd.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "common/LwsFdWatcher.h"
#include "common/LwsLoop.h"
#include "tests/unit/Subprocess.h"

namespace tether::agent {
namespace {

class ChildProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static lws_protocols protocols[] = {
        {"dummy", lws_callback_http_dummy, 0, 0, 0, nullptr, 0},
        lws_fd_watcher_protocol(),
        {nullptr, nullptr, 0, 0, 0, nullptr, 0},
    };
    lws_set_log_level(LLL_ERR, nullptr);
    lws_context_creation_info info{};
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    ctx_.reset(lws_create_context(&info));
    ASSERT_TRUE(ctx_);
    lws_context_creation_info vinfo{};
    vinfo.port = CONTEXT_PORT_NO_LISTEN;
    vinfo.vhost_name = "test";
    vinfo.protocols = protocols;
    vhost_ = lws_create_vhost(ctx_.get(), &vinfo);
    ASSERT_NE(vhost_, nullptr);
  }

  // Runs the loop until `done` or ~10 s; a ticking timer makes lws_service return often
  // (lws 4.1 sleeps until its next event otherwise).
  template <typename Pred>
  bool run_until(Pred done) {
    LwsTimer tick(ctx_.get(), [] {});
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < end) {
      tick.schedule(std::chrono::milliseconds(20));
      lws_service(ctx_.get(), 0);
    }
    return done();
  }

  // Processes whose process group is `group` (from /proc/PID/stat, field 5).
  static int group_size(pid_t group) {
    int n = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      const std::string name = entry.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream in(entry.path() / "stat");
      std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      const auto close = stat.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(stat.substr(close + 2));
      std::string state;
      long ppid = 0, pgrp = 0;
      rest >> state >> ppid >> pgrp;
      if (pgrp == group && state != "Z") ++n;
    }
    return n;
  }

  std::string read_all(int fd) {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    return out;
  }

  LwsContextPtr ctx_;
  lws_vhost* vhost_ = nullptr;
};

TEST_F(ChildProcessTest, RunsArgvWithCleanEnvironmentAndOnlyThePassedDescriptor) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]);
  UniqueFd wr(p[1]);
  SpawnSpec spec;
  // A shell here is the test's own script, not a network string.
  spec.argv = {"/bin/sh", "-c",
               "echo \"$FOO|$HOME|$SECRET\" >&3; ls /proc/self/fd >&3; id -u >&3; exit 7"};
  spec.env = {"FOO=bar", "PATH=/usr/bin:/bin"};
  spec.pass_fd = wr.get();
  const bool root = ::geteuid() == 0;
  passwd* nobody = ::getpwnam("nobody");
  if (root && nobody != nullptr) {
    spec.uid = nobody->pw_uid;
    spec.gid = nobody->pw_gid;
    spec.user = "nobody";
  }
  ::setenv("SECRET", "leaked", 1);
  std::optional<int> status;
  auto child = ChildProcess::spawn(ctx_.get(), vhost_, spec, [&](int s) { status = s; });
  ::unsetenv("SECRET");
  ASSERT_TRUE(child.ok()) << child.error().message;
  wr.reset();
  ASSERT_TRUE(run_until([&] { return status.has_value(); }));
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 7);
  EXPECT_FALSE((*child)->running());
  const std::string out = read_all(rd.get());
  EXPECT_EQ(out.substr(0, out.find('\n')), "bar||");
  // 0 1 2 3 and the one ls opens to list them; nothing of the parent's leaks.
  EXPECT_NE(out.find("\n0\n1\n2\n3\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("\n5\n"), std::string::npos) << out;
  if (root && nobody != nullptr) {
    EXPECT_NE(out.find("\n" + std::to_string(nobody->pw_uid) + "\n"), std::string::npos) << out;
  }
}

TEST_F(ChildProcessTest, ExecFailureIsAnError) {
  SpawnSpec spec;
  spec.argv = {"/nonexistent/tether-vnc"};
  auto child = ChildProcess::spawn(ctx_.get(), vhost_, spec, [](int) {});
  ASSERT_FALSE(child.ok());
  EXPECT_NE(child.error().message.find("exec"), std::string::npos) << child.error().message;
}

TEST_F(ChildProcessTest, TerminateTakesTheWholeGroup) {
  SpawnSpec spec;
  // The grandchild ignores SIGTERM: only the SIGKILL that follows the leader's exit gets it.
  spec.argv = {"/bin/sh", "-c", "(trap '' TERM; sleep 60) & sleep 60; wait"};
  spec.env = {"PATH=/usr/bin:/bin"};
  std::optional<int> status;
  auto child = ChildProcess::spawn(ctx_.get(), vhost_, spec, [&](int s) { status = s; });
  ASSERT_TRUE(child.ok()) << child.error().message;
  const pid_t group = (*child)->pid();
  EXPECT_EQ(::getpgid(group), group);
  // Wait until the shell has forked both sleeps (the group has three members).
  ASSERT_TRUE(run_until([&] { return group_size(group) >= 3; }));
  (*child)->terminate(std::chrono::milliseconds(500));
  ASSERT_TRUE(run_until([&] { return status.has_value(); }));
  EXPECT_TRUE(WIFSIGNALED(*status));
  // Nobody is left in the group.
  ASSERT_TRUE(run_until([&] { return ::kill(-group, 0) != 0 && errno == ESRCH; }));
}

TEST_F(ChildProcessTest, DestructorKillsAndReaps) {
  SpawnSpec spec;
  spec.argv = {"/bin/sleep", "60"};
  pid_t pid = -1;
  {
    auto child = ChildProcess::spawn(ctx_.get(), vhost_, spec, [](int) {});
    ASSERT_TRUE(child.ok());
    pid = (*child)->pid();
  }
  // Reaped: not even a zombie is left.
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

// The packaged agent is not root: it runs as tether-agent with CAP_SETUID and CAP_SETGID
// (ambient) and without CAP_KILL. As root, this test runs itself again that way (setpriv,
// uid 65533) and the body below, in that process, starts a helper as nobody: the helper must
// run as nobody with no capability at all, and terminate() must end it all the same.
TEST_F(ChildProcessTest, NonRootAgentWithSetuidCapabilityStartsAndEndsHelpersAsAnotherUser) {
  passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  if (::getenv("TETHER_CHILD_AS_NONROOT") == nullptr) {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root to become a non-root agent with capabilities (setpriv)";
    }
    const auto setpriv = testing::find_program("setpriv");
    ASSERT_TRUE(setpriv) << "setpriv (util-linux) is missing";
    // The test binary through a descriptor: the build tree may sit in a directory uid 65533
    // cannot enter (a clean clone in a 0700 mktemp directory).
    const int self = ::open("/proc/self/exe", O_RDONLY);  // inherited across exec on purpose
    ASSERT_GE(self, 0);
    ::setenv("TETHER_CHILD_AS_NONROOT", "1", 1);
    testing::Process again;
    ASSERT_TRUE(
        again.start({*setpriv, "--reuid=65533", "--regid=65533", "--clear-groups",
                     "--inh-caps=-all,+setuid,+setgid", "--ambient-caps=-all,+setuid,+setgid",
                     "/proc/self/fd/" + std::to_string(self),
                     "--gtest_filter=ChildProcessTest."
                     "NonRootAgentWithSetuidCapabilityStartsAndEndsHelpersAsAnotherUser"}));
    ::unsetenv("TETHER_CHILD_AS_NONROOT");
    ::close(self);
    const int code = again.wait();
    EXPECT_EQ(code, 0) << again.output();
    EXPECT_NE(again.output().find("[  PASSED  ] 1 test"), std::string::npos) << again.output();
    return;
  }
  ASSERT_EQ(::geteuid(), 65533u);

  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]);
  UniqueFd wr(p[1]);
  SpawnSpec spec;
  spec.argv = {"/bin/sh", "-c", "id -u >&3; grep ^Cap /proc/self/status >&3; exec sleep 60"};
  spec.env = {"PATH=/usr/bin:/bin"};
  spec.pass_fd = wr.get();
  spec.uid = nobody->pw_uid;
  spec.gid = nobody->pw_gid;
  spec.user = "nobody";
  std::optional<int> status;
  auto child = ChildProcess::spawn(ctx_.get(), vhost_, spec, [&](int s) { status = s; });
  ASSERT_TRUE(child.ok()) << child.error().message;
  wr.reset();
  // The agent (uid 65533, no CAP_KILL) cannot signal the helper itself.
  EXPECT_EQ(::kill((*child)->pid(), 0), -1);
  EXPECT_EQ(errno, EPERM);
  std::string out;
  char buf[1024];
  while (out.find("CapAmb") == std::string::npos) {
    const ssize_t n = ::read(rd.get(), buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  EXPECT_EQ(out.substr(0, out.find('\n')), std::to_string(nobody->pw_uid)) << out;
  for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapAmb"}) {
    EXPECT_NE(out.find(std::string(set) + ":\t0000000000000000"), std::string::npos) << out;
  }
  (*child)->terminate(std::chrono::milliseconds(500));
  ASSERT_TRUE(run_until([&] { return status.has_value(); }));
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM) << status.value_or(-1);
  EXPECT_FALSE((*child)->running());

  // Without CAP_SETUID/CAP_SETGID in effect the start fails, and the error says what is missing.
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps[2]{};
  ASSERT_EQ(::syscall(SYS_capget, &header, caps), 0);
  const auto saved = caps[0].effective;
  caps[0].effective = 0;
  ASSERT_EQ(::syscall(SYS_capset, &header, caps), 0);
  spec.pass_fd = -1;
  auto refused = ChildProcess::spawn(ctx_.get(), vhost_, spec, [](int) {});
  caps[0].effective = saved;
  ASSERT_EQ(::syscall(SYS_capset, &header, caps), 0);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("setgroups"), std::string::npos)
      << refused.error().message;
  EXPECT_NE(refused.error().message.find("CAP_SETUID"), std::string::npos)
      << refused.error().message;
}

}  // namespace
}  // namespace tether::agent
