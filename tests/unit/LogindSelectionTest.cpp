// Which logind session is "the" graphical session (pick_graphical_session's rules).
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "platform/Logind.h"

namespace tether::platform {
namespace {

// An active, local X11 user session on seat0: what a logged-in thin client has.
LogindSession x11_user(std::string id = "2") {
  return LogindSession{.id = id,
                       .object_path = "/org/freedesktop/login1/session/_3" + id,
                       .uid = 1000,
                       .user = "alice",
                       .seat = "seat0",
                       .type = "x11",
                       .session_class = "user",
                       .state = "active",
                       .active = true,
                       .remote = false,
                       .display = ":0",
                       .service = "lightdm",
                       .tty = "",
                       .leader = 1234};
}

std::optional<std::string> picked(const std::vector<LogindSession>& sessions) {
  auto s = pick_graphical_session(sessions);
  if (!s) return std::nullopt;
  return s->id;
}

TEST(LogindSelectionTest, NoSessionsIsNone) {
  EXPECT_EQ(pick_graphical_session({}), std::nullopt);
}

TEST(LogindSelectionTest, TheActiveX11UserSessionWithAllItsFields) {
  const std::vector<LogindSession> sessions{x11_user("c7")};
  const auto s = pick_graphical_session(sessions);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->id, "c7");
  EXPECT_EQ(s->object_path, "/org/freedesktop/login1/session/_3c7");
  EXPECT_EQ(s->uid, 1000U);
  EXPECT_EQ(s->user, "alice");
  EXPECT_EQ(s->display, ":0");
  EXPECT_EQ(s->seat, "seat0");
  EXPECT_EQ(s->type, "x11");
  EXPECT_EQ(s->session_class, "user");
  EXPECT_EQ(s->leader, 1234);
  EXPECT_EQ(s->service, "lightdm");
}

TEST(LogindSelectionTest, OnlySessionsThatCanBeShown) {
  auto inactive = x11_user("inactive");
  inactive.active = false;
  inactive.state = "online";
  auto remote = x11_user("remote");
  remote.remote = true;
  auto seatless = x11_user("seatless");
  seatless.seat = "";
  auto seat1 = x11_user("seat1");
  seat1.seat = "seat1";
  auto tty = x11_user("tty");
  tty.type = "tty";
  auto unspecified = x11_user("ssh");
  unspecified.type = "unspecified";
  auto lock = x11_user("lock");
  lock.session_class = "lock-screen";
  auto background = x11_user("bg");
  background.session_class = "background";
  auto closing = x11_user("closing");
  closing.state = "closing";
  for (const auto& s :
       {inactive, remote, seatless, seat1, tty, unspecified, lock, background, closing}) {
    EXPECT_EQ(picked({s}), std::nullopt) << s.id;
  }
  EXPECT_EQ(picked({inactive, remote, seatless, seat1, tty, x11_user("ok"), lock, closing}), "ok");
}

TEST(LogindSelectionTest, ActiveByFlagOrByState) {
  auto by_state = x11_user("state");
  by_state.active = false;
  by_state.state = "active";
  EXPECT_EQ(picked({by_state}), "state");
  auto by_flag = x11_user("flag");
  by_flag.state = "";
  EXPECT_EQ(picked({by_flag}), "flag");
}

TEST(LogindSelectionTest, AUserSessionBeatsTheGreeter) {
  auto greeter = x11_user("greeter");
  greeter.session_class = "greeter";
  greeter.user = "lightdm";
  EXPECT_EQ(picked({greeter}), "greeter");  // nobody logged in: the login screen
  EXPECT_EQ(picked({greeter, x11_user("user")}), "user");
  EXPECT_EQ(picked({x11_user("user"), greeter}), "user");
}

TEST(LogindSelectionTest, X11BeatsWaylandButWaylandIsReported) {
  auto wayland = x11_user("wayland");
  wayland.type = "wayland";
  wayland.display = "";
  EXPECT_EQ(picked({wayland}), "wayland");
  EXPECT_EQ(picked({wayland, x11_user("x11")}), "x11");
  // The class decides first: a user on Wayland beats an X11 greeter.
  auto greeter = x11_user("greeter");
  greeter.session_class = "greeter";
  EXPECT_EQ(picked({greeter, wayland}), "wayland");
}

TEST(LogindSelectionTest, TheFirstOfEqualsWins) {
  EXPECT_EQ(picked({x11_user("a"), x11_user("b")}), "a");
}

}  // namespace
}  // namespace tether::platform
