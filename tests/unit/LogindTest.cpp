// platform::Logind against python3-dbusmock's logind on a private bus
// (tests/integration/dbusmock_harness.py serve), driven by a plain poll() loop. These run in
// the asan preset too, which is where destroying a Logind with calls in flight must hold up.
// The integration tests (test_logind.py) cover the rest, through tether-logind-probe.
#include "platform/Logind.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "Subprocess.h"
#include "TempDir.h"

#ifndef TETHER_SOURCE_DIR
#error "TETHER_SOURCE_DIR must name the source tree (for the dbusmock harness)"
#endif

namespace tether::platform {
namespace {

using Clock = std::chrono::steady_clock;
using SessionResult = Result<std::optional<GraphicalSession>>;

// A private bus with logind (or without), for one test; DBUS_SYSTEM_BUS_ADDRESS points at it
// while the object lives.
class MockBus {
 public:
  explicit MockBus(std::vector<std::string> args) {
    std::vector<std::string> argv{
        "/usr/bin/python3",
        std::string(TETHER_SOURCE_DIR) + "/tests/integration/dbusmock_harness.py", "serve"};
    argv.insert(argv.end(), args.begin(), args.end());
    if (!proc_.start(argv) || !proc_.read_until("READY\n")) {
      ADD_FAILURE() << "the dbusmock harness did not start (python3-dbusmock and dbus-daemon "
                       "come from scripts/deps): "
                    << proc_.output();
      return;
    }
    const std::string key = "DBUS_SYSTEM_BUS_ADDRESS=";
    const auto at = proc_.output().find(key);
    const auto end = proc_.output().find('\n', at);
    address_ = proc_.output().substr(at + key.size(), end - at - key.size());
    ::setenv("DBUS_SYSTEM_BUS_ADDRESS", address_.c_str(), 1);
  }
  ~MockBus() {
    ::unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
    proc_.stop();
  }
  MockBus(const MockBus&) = delete;
  MockBus& operator=(const MockBus&) = delete;

  [[nodiscard]] bool up() const { return !address_.empty(); }

 private:
  testing::Process proc_;
  std::string address_;
};

std::unique_ptr<Logind> connect_or_fail(Logind::Options options = {}) {
  auto logind = Logind::connect(options);
  if (!logind.ok()) {
    ADD_FAILURE() << logind.error().message;
    return nullptr;
  }
  return std::move(logind).value();
}

// The event loop: poll the bus fd, honour the timeout, process. Stops when `finished` says so
// or the Logind has been destroyed (by a callback); false after 20 s.
bool pump(std::unique_ptr<Logind>& logind, const std::function<bool()>& finished) {
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (logind && !finished()) {
    if (Clock::now() > deadline) return false;
    int wait_ms = 100;
    if (auto t = logind->timeout()) {
      wait_ms = std::min<int>(
          wait_ms, static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(*t).count()));
    }
    pollfd p{.fd = logind->fd(), .events = logind->poll_events(), .revents = 0};
    ::poll(&p, p.fd >= 0 ? 1 : 0, wait_ms);
    (void)logind->process();
  }
  return true;
}

TEST(LogindTest, NoBusIsUnavailable) {
  testing::TempDir dir;
  ::setenv("DBUS_SYSTEM_BUS_ADDRESS", ("unix:path=" + dir / "no-bus").c_str(), 1);
  auto logind = Logind::connect();
  ::unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
  ASSERT_FALSE(logind.ok());
  EXPECT_EQ(logind.error().code, Errc::kUnavailable);
}

TEST(LogindTest, NoLogindOnTheBusIsUnavailable) {
  MockBus bus({"--no-logind"});
  ASSERT_TRUE(bus.up());
  auto logind = connect_or_fail();
  ASSERT_TRUE(logind);
  std::optional<Status> rebooted;
  std::optional<SessionResult> session;
  logind->reboot([&](Status s) { rebooted = std::move(s); });
  logind->find_graphical_session([&](SessionResult r) { session.emplace(std::move(r)); });
  ASSERT_TRUE(pump(logind, [&] { return rebooted && session; }));
  ASSERT_FALSE(rebooted->ok());
  EXPECT_EQ(rebooted->error().code, Errc::kUnavailable);
  EXPECT_EQ(rebooted->error().message.rfind("org.freedesktop.DBus.Error.ServiceUnknown: ", 0), 0U)
      << rebooted->error().message;
  ASSERT_FALSE(session->ok());
  EXPECT_EQ(session->error().code, Errc::kUnavailable);
}

TEST(LogindTest, RebootPowerOffAndTheSession) {
  MockBus bus({"--session", R"({"id": "c1", "uid": 1000, "user": "alice", "type": "x11"})"});
  ASSERT_TRUE(bus.up());
  auto logind = connect_or_fail();
  ASSERT_TRUE(logind);
  std::optional<Status> rebooted;
  std::optional<Status> powered_off;
  std::optional<SessionResult> session;
  logind->reboot([&](Status s) { rebooted = std::move(s); });
  logind->power_off([&](Status s) { powered_off = std::move(s); });
  logind->find_graphical_session([&](SessionResult r) { session.emplace(std::move(r)); });
  ASSERT_TRUE(pump(logind, [&] { return rebooted && powered_off && session; }));
  EXPECT_TRUE(rebooted->ok()) << rebooted->error().message;
  EXPECT_TRUE(powered_off->ok()) << powered_off->error().message;
  ASSERT_TRUE(session->ok()) << session->error().message;
  ASSERT_TRUE(session->value().has_value());
  EXPECT_EQ(session->value()->user, "alice");
  EXPECT_EQ(session->value()->uid, 1000U);
  EXPECT_EQ(session->value()->display, ":0");
  EXPECT_EQ(logind->calls_in_flight(), 0U);
}

TEST(LogindTest, ADbusErrorKeepsItsNameAndMessage) {
  MockBus bus({"--fail", "Reboot=org.freedesktop.DBus.Error.AccessDenied:Not for you", "--fail",
               "PowerOff=org.freedesktop.login1.OperationInProgress:Busy"});
  ASSERT_TRUE(bus.up());
  auto logind = connect_or_fail();
  ASSERT_TRUE(logind);
  std::optional<Status> rebooted;
  std::optional<Status> powered_off;
  logind->reboot([&](Status s) { rebooted = std::move(s); });
  logind->power_off([&](Status s) { powered_off = std::move(s); });
  ASSERT_TRUE(pump(logind, [&] { return rebooted && powered_off; }));
  ASSERT_FALSE(rebooted->ok());
  EXPECT_EQ(rebooted->error().code, Errc::kPermissionDenied);
  EXPECT_EQ(rebooted->error().message, "org.freedesktop.DBus.Error.AccessDenied: Not for you");
  ASSERT_FALSE(powered_off->ok());
  EXPECT_EQ(powered_off->error().code, Errc::kInternal);
  EXPECT_EQ(powered_off->error().message, "org.freedesktop.login1.OperationInProgress: Busy");
}

TEST(LogindTest, AnUnansweredCallTimesOut) {
  MockBus bus({"--delay", "PowerOff=3"});
  ASSERT_TRUE(bus.up());
  auto logind = connect_or_fail({.call_timeout = std::chrono::milliseconds(200)});
  ASSERT_TRUE(logind);
  std::optional<Status> powered_off;
  logind->power_off([&](Status s) { powered_off = std::move(s); });
  ASSERT_TRUE(pump(logind, [&] { return powered_off.has_value(); }));
  ASSERT_FALSE(powered_off->ok());
  EXPECT_EQ(powered_off->error().code, Errc::kUnavailable);
  EXPECT_EQ(powered_off->error().message.rfind("org.freedesktop.DBus.Error.NoReply", 0), 0U)
      << powered_off->error().message;
}

// Destroying the Logind with calls sent and their replies on the way: no callback runs, and
// nothing is touched afterwards (ASan would see it).
TEST(LogindTest, DestroyedWithCallsInFlightCallsNothing) {
  MockBus bus({"--session", R"({"id": "c1", "type": "x11"})"});
  ASSERT_TRUE(bus.up());
  auto logind = connect_or_fail();
  ASSERT_TRUE(logind);
  bool warmed_up = false;
  logind->find_graphical_session([&](const SessionResult&) { warmed_up = true; });
  ASSERT_TRUE(pump(logind, [&] { return warmed_up; }));

  int callbacks = 0;
  logind->reboot([&](const Status&) { ++callbacks; });
  logind->power_off([&](const Status&) { ++callbacks; });
  logind->find_graphical_session([&](const SessionResult&) { ++callbacks; });
  EXPECT_EQ(logind->calls_in_flight(), 3U);
  // Let the answers reach our socket, unread.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  logind.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(callbacks, 0);
}

// A callback that destroys the Logind (an agent shutting down on the answer) while other calls
// are in flight, from inside process().
TEST(LogindTest, DestroyedFromItsOwnCallback) {
  MockBus bus({"--session", R"({"id": "c1", "type": "x11"})", "--session",
               R"({"id": "c2", "type": "wayland"})"});
  ASSERT_TRUE(bus.up());
  auto logind = connect_or_fail();
  ASSERT_TRUE(logind);
  int callbacks = 0;
  auto destroy = [&] {
    ++callbacks;
    logind.reset();
  };
  logind->find_graphical_session([&](const SessionResult&) { destroy(); });
  logind->reboot([&](const Status&) { destroy(); });
  logind->power_off([&](const Status&) { destroy(); });
  ASSERT_TRUE(pump(logind, [] { return false; }));
  EXPECT_EQ(logind, nullptr);
  EXPECT_EQ(callbacks, 1);
}

// A callback that starts the next call: re-entrancy through the request methods is fine.
TEST(LogindTest, CallbacksMayStartCalls) {
  MockBus bus({"--session", R"({"id": "c1", "type": "x11", "user": "bob", "uid": 1001})"});
  ASSERT_TRUE(bus.up());
  auto logind = connect_or_fail();
  ASSERT_TRUE(logind);
  std::optional<SessionResult> session;
  std::optional<Status> rebooted;
  logind->find_graphical_session([&](SessionResult r) {
    session.emplace(std::move(r));
    logind->reboot([&](Status s) { rebooted = std::move(s); });
  });
  ASSERT_TRUE(pump(logind, [&] { return rebooted.has_value(); }));
  ASSERT_TRUE(session->ok());
  ASSERT_TRUE(session->value().has_value());
  EXPECT_EQ(session->value()->user, "bob");
  EXPECT_TRUE(rebooted->ok());
}

}  // namespace
}  // namespace tether::platform
