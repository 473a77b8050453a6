// SystemdNotifier against a NOTIFY_SOCKET of our own: the datagrams systemd would receive.
#include "platform/SystemdNotifier.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "TempDir.h"
#include "common/UniqueFd.h"

namespace tether::platform {
namespace {

using std::chrono::microseconds;

// Sets (or unsets, with nullopt) an environment variable for one test, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str())) old_ = old;
    if (value) {
      ::setenv(name_.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// What systemd does: a datagram socket, named in NOTIFY_SOCKET.
class NotifySocket {
 public:
  // `abstract`: a Linux abstract socket ("@name"), which systemd also hands out.
  explicit NotifySocket(bool abstract = false) {
    fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(fd_.valid());
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    socklen_t len = 0;
    if (abstract) {
      const std::string name = "tether-notify-test-" + std::to_string(::getpid());
      addr.sun_path[0] = '\0';
      std::memcpy(addr.sun_path + 1, name.data(), name.size());
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
      env_value_ = "@" + name;
    } else {
      env_value_ = dir_ / "notify";
      std::memcpy(addr.sun_path, env_value_.c_str(), env_value_.size() + 1);
      len = sizeof addr;
    }
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), len), 0)
        << std::strerror(errno);
    env_.emplace("NOTIFY_SOCKET", env_value_);
  }

  [[nodiscard]] const std::string& name() const { return env_value_; }

  // The next datagram, or nullopt when none arrives within `timeout_ms`.
  std::optional<std::string> receive(int timeout_ms = 2000) {
    pollfd p{.fd = fd_.get(), .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, timeout_ms) != 1) return std::nullopt;
    char buf[4096];
    const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<std::size_t>(n));
  }

 private:
  testing::TempDir dir_;
  UniqueFd fd_;
  std::string env_value_;
  std::optional<ScopedEnv> env_;
};

std::uint64_t monotonic_usec() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000U +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1000U;
}

TEST(SystemdNotifierTest, SendsEachMessageExactly) {
  NotifySocket sock;
  SystemdNotifier notifier;
  ASSERT_TRUE(notifier.enabled());

  ASSERT_TRUE(notifier.ready().ok());
  EXPECT_EQ(sock.receive(), "READY=1");
  ASSERT_TRUE(notifier.status("connected to wss://server:8443/up").ok());
  EXPECT_EQ(sock.receive(), "STATUS=connected to wss://server:8443/up");
  ASSERT_TRUE(notifier.watchdog().ok());
  EXPECT_EQ(sock.receive(), "WATCHDOG=1");
  ASSERT_TRUE(notifier.stopping().ok());
  EXPECT_EQ(sock.receive(), "STOPPING=1");
  EXPECT_EQ(sock.receive(100), std::nullopt);
}

TEST(SystemdNotifierTest, ReloadingCarriesTheMonotonicTime) {
  NotifySocket sock;
  SystemdNotifier notifier;
  const std::uint64_t before = monotonic_usec();
  ASSERT_TRUE(notifier.reloading().ok());
  const std::uint64_t after = monotonic_usec();
  const auto got = sock.receive();
  ASSERT_TRUE(got.has_value());
  const std::string prefix = "RELOADING=1\nMONOTONIC_USEC=";
  ASSERT_EQ(got->substr(0, prefix.size()), prefix) << *got;
  const std::string digits = got->substr(prefix.size());
  ASSERT_FALSE(digits.empty());
  ASSERT_EQ(digits.find_first_not_of("0123456789"), std::string::npos) << *got;
  const std::uint64_t usec = std::stoull(digits);
  EXPECT_GE(usec, before);
  EXPECT_LE(usec, after);
}

TEST(SystemdNotifierTest, StatusStaysOnOneLine) {
  NotifySocket sock;
  SystemdNotifier notifier;
  ASSERT_TRUE(notifier.status("waiting 13 s\nREADY=1\r\tbefore reconnect").ok());
  // A newline in the text must not become a second assignment (READY=1 here).
  EXPECT_EQ(sock.receive(), "STATUS=waiting 13 s READY=1  before reconnect");
  EXPECT_EQ(SystemdNotifier::status_line(std::string_view("a\0b", 3)), "STATUS=a b");
  EXPECT_EQ(SystemdNotifier::status_line(""), "STATUS=");
  EXPECT_EQ(SystemdNotifier::status_line("caf\xc3\xa9"), "STATUS=caf\xc3\xa9");
}

TEST(SystemdNotifierTest, ReachesAnAbstractSocket) {
  NotifySocket sock(/*abstract=*/true);
  SystemdNotifier notifier;
  ASSERT_TRUE(notifier.ready().ok());
  EXPECT_EQ(sock.receive(), "READY=1");
}

TEST(SystemdNotifierTest, KeepsTheEnvironmentForAReexec) {
  NotifySocket sock;
  SystemdNotifier notifier;
  ASSERT_TRUE(notifier.ready().ok());
  const char* still = std::getenv("NOTIFY_SOCKET");
  ASSERT_NE(still, nullptr);
  EXPECT_EQ(still, sock.name());
  // A second notifier (what a re-executed daemon makes) still reaches the socket.
  SystemdNotifier again;
  ASSERT_TRUE(again.stopping().ok());
  EXPECT_EQ(sock.receive(), "READY=1");
  EXPECT_EQ(sock.receive(), "STOPPING=1");
}

TEST(SystemdNotifierTest, WithoutNotifySocketEverythingIsANoOp) {
  ScopedEnv unset("NOTIFY_SOCKET", std::nullopt);
  SystemdNotifier notifier;
  EXPECT_FALSE(notifier.enabled());
  EXPECT_TRUE(notifier.ready().ok());
  EXPECT_TRUE(notifier.status("x").ok());
  EXPECT_TRUE(notifier.watchdog().ok());
  EXPECT_TRUE(notifier.reloading().ok());
  EXPECT_TRUE(notifier.stopping().ok());
}

TEST(SystemdNotifierTest, AnUnreachableSocketIsAnError) {
  testing::TempDir dir;
  const std::string missing = dir / "nobody-listens";
  ScopedEnv env("NOTIFY_SOCKET", missing);
  SystemdNotifier notifier;
  const Status s = notifier.ready();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::kIo);
  EXPECT_NE(s.error().message.find(missing), std::string::npos) << s.error().message;
}

TEST(SystemdNotifierTest, WatchdogIntervalIsHalfTheTimeoutForThisProcess) {
  ScopedEnv usec("WATCHDOG_USEC", "2000000");
  {
    ScopedEnv pid("WATCHDOG_PID", std::to_string(::getpid()));
    EXPECT_EQ(SystemdNotifier().watchdog_interval(), microseconds(1000000));
  }
  {
    // No WATCHDOG_PID: the watchdog is ours (systemd sets it only when it could be ambiguous).
    ScopedEnv pid("WATCHDOG_PID", std::nullopt);
    EXPECT_EQ(SystemdNotifier().watchdog_interval(), microseconds(1000000));
  }
  // Reading it must not unset it: a re-exec needs it too.
  EXPECT_NE(std::getenv("WATCHDOG_USEC"), nullptr);
}

TEST(SystemdNotifierTest, WatchdogForAnotherProcessIsNotOurs) {
  ScopedEnv usec("WATCHDOG_USEC", "2000000");
  ScopedEnv pid("WATCHDOG_PID", std::to_string(::getpid() + 1));
  EXPECT_EQ(SystemdNotifier().watchdog_interval(), std::nullopt);
}

TEST(SystemdNotifierTest, NoWatchdogWithoutAValidTimeout) {
  ScopedEnv pid("WATCHDOG_PID", std::to_string(::getpid()));
  {
    ScopedEnv usec("WATCHDOG_USEC", std::nullopt);
    EXPECT_EQ(SystemdNotifier().watchdog_interval(), std::nullopt);
  }
  {
    ScopedEnv usec("WATCHDOG_USEC", "soon");
    EXPECT_EQ(SystemdNotifier().watchdog_interval(), std::nullopt);
  }
  {
    ScopedEnv usec("WATCHDOG_USEC", "0");
    EXPECT_EQ(SystemdNotifier().watchdog_interval(), std::nullopt);
  }
}

}  // namespace
}  // namespace tether::platform
