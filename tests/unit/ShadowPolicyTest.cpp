// The pure parts of shadowing: policy decisions, the X authority lookup order (on a fake
// filesystem root), helper paths, command lines and environments, tunnel URLs, and the
// shadow.viewers policy floor.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "agent/AgentConfig.h"
#include "agent/AgentSettings.h"
#include "agent/ShadowPolicy.h"
#include "agent/ShadowTunnel.h"
#include "tests/unit/TempDir.h"

namespace tether::agent {
namespace {

using protocol::ShadowStart;
using protocol::ViewerKind;

ShadowStart request(ViewerKind viewer = ViewerKind::kExternal, bool view_only = false) {
  ShadowStart s;
  s.session_id = "S1";
  s.tunnel_url = "wss://server.example:8443/tunnel/device/S1";
  s.token = "tok";
  s.admin = "alice";
  s.viewer = viewer;
  s.view_only = view_only;
  return s;
}

Config config_with(std::vector<std::string> sets) {
  ConfigSources sources;
  sources.overrides = std::move(sets);
  auto c = Config::load(agent_config_schema(), sources);
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return std::move(c).value();
}

TEST(ShadowPolicy, DefaultsAllowWithAPromptThatDeniesOnTimeout) {
  const auto d = decide_shadow(shadow_policy_from_config(config_with({})), request());
  EXPECT_TRUE(d.allowed);
  EXPECT_TRUE(d.prompt);
  EXPECT_FALSE(d.prompt_default_allow);
  EXPECT_FALSE(d.view_only);
  EXPECT_EQ(d.prompt_timeout, std::chrono::seconds(30));
}

TEST(ShadowPolicy, NotAllowedIsRefusedWithAReason) {
  const auto d =
      decide_shadow(shadow_policy_from_config(config_with({"shadow.allowed=false"})), request());
  EXPECT_FALSE(d.allowed);
  EXPECT_NE(d.refusal_message.find("shadow.allowed"), std::string::npos);
}

TEST(ShadowPolicy, ViewerKindsAreFiltered) {
  auto browser_only = shadow_policy_from_config(config_with({"shadow.viewers=browser"}));
  EXPECT_TRUE(decide_shadow(browser_only, request(ViewerKind::kBrowser)).allowed);
  const auto d = decide_shadow(browser_only, request(ViewerKind::kExternal));
  EXPECT_FALSE(d.allowed);
  EXPECT_NE(d.refusal_message.find("external"), std::string::npos);
  auto external_only = shadow_policy_from_config(config_with({"shadow.viewers=external"}));
  EXPECT_FALSE(decide_shadow(external_only, request(ViewerKind::kBrowser)).allowed);
  EXPECT_TRUE(decide_shadow(external_only, request(ViewerKind::kExternal)).allowed);
}

TEST(ShadowPolicy, ViewOnlyComesFromEitherSide) {
  auto local = shadow_policy_from_config(config_with({"shadow.view_only=true"}));
  EXPECT_TRUE(decide_shadow(local, request(ViewerKind::kExternal, false)).view_only);
  auto open = shadow_policy_from_config(config_with({}));
  EXPECT_TRUE(decide_shadow(open, request(ViewerKind::kExternal, true)).view_only);
  EXPECT_FALSE(decide_shadow(open, request(ViewerKind::kExternal, false)).view_only);
}

TEST(ShadowPolicy, PromptSettingsAreCarried) {
  auto p = shadow_policy_from_config(config_with(
      {"shadow.prompt_user=false", "shadow.prompt_default=allow", "shadow.prompt_timeout=5s"}));
  const auto d = decide_shadow(p, request());
  EXPECT_FALSE(d.prompt);
  EXPECT_TRUE(d.prompt_default_allow);
  EXPECT_EQ(d.prompt_timeout, std::chrono::seconds(5));
}

TEST(ShadowPolicy, ViewersValueIsCheckedAtLoad) {
  ConfigSources sources;
  sources.overrides = {"shadow.viewers=everyone"};
  EXPECT_FALSE(Config::load(agent_config_schema(), sources).ok());
  EXPECT_TRUE(viewers_within("browser,external", "browser"));
  EXPECT_TRUE(viewers_within("browser", "browser"));
  EXPECT_FALSE(viewers_within("browser", "browser,external"));
  EXPECT_FALSE(viewers_within("browser", "external"));
}

void write(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << content;
}

using Files = std::vector<std::string>;

TEST(XauthorityLookup, LeaderEnvironmentComesFirst) {
  testing::TempDir root;
  const std::string env = std::string("PATH=/bin\0XAUTHORITY=/tmp/xauth_abc\0HOME=/home/u\0", 47);
  write(root / "proc/1234/environ", env);
  write(root / "tmp/xauth_abc", "x");
  write(root / "run/user/1000/gdm/Xauthority", "x");
  write(root / "home/u/.Xauthority", "x");
  XauthorityQuery q{root.path(), 1000, "u", "/home/u", ":0", 1234};
  const auto c = xauthority_candidates(q);
  ASSERT_EQ(c.size(), 4u);
  EXPECT_EQ(c[0], "/tmp/xauth_abc");
  EXPECT_EQ(c[1], "/run/user/1000/gdm/Xauthority");
  EXPECT_EQ(c[2], "/home/u/.Xauthority");
  EXPECT_EQ(c[3], "/var/run/lightdm/root/:0");
  EXPECT_EQ(find_xauthority(q), Files{"/tmp/xauth_abc"});
}

TEST(XauthorityLookup, FallsThroughToTheFirstFileThatExists) {
  testing::TempDir root;
  XauthorityQuery q{root.path(), 1000, "u", "/home/u", ":0", 0};
  EXPECT_EQ(find_xauthority(q), Files{});
  write(root / "var/run/lightdm/root/:0", "x");
  EXPECT_EQ(find_xauthority(q), Files{"/var/run/lightdm/root/:0"});
  write(root / "home/u/.Xauthority", "x");
  EXPECT_EQ(find_xauthority(q), Files{"/home/u/.Xauthority"});
  write(root / "run/user/1000/gdm/Xauthority", "x");
  EXPECT_EQ(find_xauthority(q), Files{"/run/user/1000/gdm/Xauthority"});
  // A leader whose environment names no XAUTHORITY (or a relative one) changes nothing.
  write(root / "proc/77/environ", std::string("XAUTHORITY=relative\0", 20));
  q.leader = 77;
  EXPECT_EQ(xauthority_candidates(q).size(), 3u);
  // A directory is not an authority file.
  std::filesystem::remove(root / "run/user/1000/gdm/Xauthority");
  std::filesystem::create_directories(root / "run/user/1000/gdm/Xauthority");
  EXPECT_EQ(find_xauthority(q), Files{"/home/u/.Xauthority"});
}

// The packaged agent is not root: the session's 0700 directories are closed to it. What it
// cannot look into is handed on for the helper (running as the session's user) to try.
TEST(XauthorityLookup, FilesTheAgentMayNotSeeArePassedOnInOrder) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to make files another user cannot see";
  testing::TempDir root;
  ::chmod(root.path().c_str(), 0755);
  write(root / "run/user/1000/gdm/Xauthority", "x");
  write(root / "home/u/.Xauthority", "x");
  write(root / "var/run/lightdm/root/:0", "x");
  ::chmod((root / "run/user/1000").c_str(), 0700);
  ::chmod((root / "home/u").c_str(), 0700);
  XauthorityQuery q{root.path(), 1000, "u", "/home/u", ":0", 0};
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(p[0]);
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    std::string out;
    for (const auto& f : find_xauthority(q)) out += f + "\n";
    const bool ok = ::write(p[1], out.data(), out.size()) == static_cast<ssize_t>(out.size());
    ::_exit(ok ? 0 : 3);
  }
  ::close(p[1]);
  std::string got;
  char buf[512];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<std::size_t>(n));
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // Both closed directories stay in; the lightdm file, which it can see, ends the list.
  EXPECT_EQ(got, "/run/user/1000/gdm/Xauthority\n/home/u/.Xauthority\n/var/run/lightdm/root/:0\n");
  // Root sees the first file and stops there.
  EXPECT_EQ(find_xauthority(q), Files{"/run/user/1000/gdm/Xauthority"});
}

TEST(ShadowArgv, SeveralAuthorityFilesAreSeveralOptionsAndNoEnvironment) {
  ShadowTarget t;
  t.display = ":0";
  t.xauthority = {"/run/user/1000/gdm/Xauthority", "/home/u/.Xauthority"};
  VncLaunch launch;
  launch.path = "/vnc";
  const Files expected = {"/vnc",
                          "--fd",
                          "3",
                          "--display",
                          ":0",
                          "--xauthority",
                          "/run/user/1000/gdm/Xauthority",
                          "--xauthority",
                          "/home/u/.Xauthority"};
  EXPECT_EQ(vnc_argv(launch, t), expected);
  const auto env = child_environment(t);
  EXPECT_EQ(std::count_if(env.begin(), env.end(),
                          [](const std::string& e) { return e.rfind("XAUTHORITY=", 0) == 0; }),
            0);
}

TEST(HelperPath, ConfiguredThenBesideTheAgentThenLibexec) {
  testing::TempDir dir;
  write(dir / "tether-vnc", "#!/bin/sh\n");
  ::chmod((dir / "tether-vnc").c_str(), 0755);
  EXPECT_EQ(helper_path("/opt/x/vnc", "tether-vnc", dir / "tether-agent"), "/opt/x/vnc");
  EXPECT_EQ(helper_path("", "tether-vnc", dir / "tether-agent"), dir / "tether-vnc");
  EXPECT_EQ(helper_path("", "tether-shadow-ui", dir / "tether-agent"),
            "/usr/libexec/tether/tether-shadow-ui");
}

ShadowTarget target() {
  ShadowTarget t;
  t.display = ":5";
  t.xauthority = {"/home/u/.Xauthority"};
  t.uid = 1000;
  t.user = "u";
  t.home = "/home/u";
  return t;
}

TEST(ShadowArgv, VncCommandLineIsAnArgvWithTheForcedFlags) {
  VncLaunch launch;
  launch.path = "/usr/libexec/tether/tether-vnc";
  launch.fd = 3;
  launch.view_only = true;
  launch.monitor = "HDMI-1; rm -rf /";
  const auto argv = vnc_argv(launch, target());
  const std::vector<std::string> expected = {"/usr/libexec/tether/tether-vnc",
                                             "--fd",
                                             "3",
                                             "--display",
                                             ":5",
                                             "--xauthority",
                                             "/home/u/.Xauthority",
                                             "--view-only",
                                             "--monitor",
                                             "HDMI-1; rm -rf /"};
  EXPECT_EQ(argv, expected);  // the monitor name stays one argument: no shell ever sees it
  launch.view_only = false;
  launch.monitor.clear();
  const auto plain = vnc_argv(launch, target());
  EXPECT_EQ(std::count(plain.begin(), plain.end(), "--view-only"), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), "--monitor"), 0);
}

TEST(ShadowArgv, PromptAndIndicator) {
  const auto prompt =
      prompt_argv("/ui", target(), "Mallory $(id)", std::chrono::seconds(7), false, true);
  const std::vector<std::string> expected = {
      "/ui",        "prompt",        "--display", ":5", "--xauthority", "/home/u/.Xauthority",
      "--admin",    "Mallory $(id)", "--timeout", "7",  "--default",    "deny",
      "--view-only"};
  EXPECT_EQ(prompt, expected);
  const auto indicator = indicator_argv("/ui", target(), "bob", false);
  const std::vector<std::string> expected_indicator = {
      "/ui",          "indicator",           "--display", ":5",
      "--xauthority", "/home/u/.Xauthority", "--admin",   "bob"};
  EXPECT_EQ(indicator, expected_indicator);
}

TEST(ShadowArgv, EnvironmentIsMinimal) {
  const auto env = child_environment(target());
  const std::vector<std::string> expected = {"DISPLAY=:5",   "XAUTHORITY=/home/u/.Xauthority",
                                             "HOME=/home/u", "USER=u",
                                             "LOGNAME=u",    "PATH=/usr/local/bin:/usr/bin:/bin"};
  EXPECT_EQ(env, expected);
}

TEST(TunnelUrl, TokenIsAppendedUnlessPresent) {
  auto ep = parse_tunnel_url("wss://server.example:8443/tunnel/device/S1", "abc");
  ASSERT_TRUE(ep.ok()) << ep.error().message;
  EXPECT_EQ(ep->host, "server.example");
  EXPECT_EQ(ep->port, 8443);
  EXPECT_EQ(ep->path, "/tunnel/device/S1?token=abc");
  ep = parse_tunnel_url("wss://[::1]:9443/tunnel/device/S1?token=xyz", "abc");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->host, "::1");
  EXPECT_EQ(ep->port, 9443);
  EXPECT_EQ(ep->path, "/tunnel/device/S1?token=xyz");
  ep = parse_tunnel_url("wss://h/t?x=1", "abc");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->port, 443);
  EXPECT_EQ(ep->path, "/t?x=1&token=abc");
  EXPECT_FALSE(parse_tunnel_url("ws://h/t", "abc").ok());
  EXPECT_FALSE(parse_tunnel_url("wss://h:0/t", "abc").ok());
  EXPECT_FALSE(parse_tunnel_url("wss://u@h/t", "abc").ok());
  EXPECT_FALSE(parse_tunnel_url("wss:///t", "abc").ok());
  EXPECT_FALSE(parse_tunnel_url("wss://h/t x", "abc").ok());
}

class ViewersFloor : public ::testing::Test {
 protected:
  testing::TempDir dir;
  ConfigLocation location() {
    ConfigLocation l;
    l.main_file = dir / "agent.conf";
    return l;
  }
};

TEST_F(ViewersFloor, ServerMayNarrowButNotWidenALocalViewersList) {
  write(dir / "agent.conf", "[shadow]\nviewers = browser\n");
  auto current = load_agent_config(location());
  ASSERT_TRUE(current.ok());
  auto widened =
      apply_server_settings(location(), *current, {{"shadow.viewers", "browser,external"}});
  ASSERT_FALSE(widened.ok());
  EXPECT_EQ(widened.error().code, Errc::kPermissionDenied);
  EXPECT_NE(widened.error().message.find("shadow.viewers"), std::string::npos);
  auto same = apply_server_settings(location(), *current, {{"shadow.viewers", "browser"}});
  EXPECT_TRUE(same.ok()) << same.error().message;
}

TEST_F(ViewersFloor, ProgramPathsAreLocalOnly) {
  write(dir / "agent.conf", "");
  auto current = load_agent_config(location());
  ASSERT_TRUE(current.ok());
  for (const char* key : {"shadow.vnc_path", "shadow.ui_path", "shadow.xauthority"}) {
    auto pushed = apply_server_settings(location(), *current, {{key, "/tmp/evil"}});
    ASSERT_FALSE(pushed.ok()) << key;
    EXPECT_NE(pushed.error().message.find("only be set on the device"), std::string::npos);
  }
  auto narrowed = apply_server_settings(location(), *current, {{"shadow.viewers", "external"}});
  EXPECT_TRUE(narrowed.ok());
}

}  // namespace
}  // namespace tether::agent
