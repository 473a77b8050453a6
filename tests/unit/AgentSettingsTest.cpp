#include "agent/AgentSettings.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "TempDir.h"

namespace tether::agent {
namespace {

using testing::slurp;
using testing::TempDir;

struct Fixture {
  TempDir tmp;
  ConfigLocation location;
  Fixture(const std::string& main_content = "") {
    location.main_file = tmp / "agent.conf";
    tmp.write("agent.conf", main_content);
  }
  Config load() {
    auto c = load_agent_config(location);
    EXPECT_TRUE(c.ok()) << c.error().message;
    return std::move(c).value();
  }
};

TEST(AgentSettingsTest, AppliesWritesAndReportsChanges) {
  Fixture f;
  Config current = f.load();
  auto change = apply_server_settings(f.location, current,
                                      {{"shadow.view_only", "yes"}, {"log.level", "debug"}});
  ASSERT_TRUE(change.ok()) << change.error().message;
  EXPECT_EQ(change->config.string("shadow.view_only"), "true");  // normalised
  ASSERT_EQ(change->changed.size(), 2u);
  EXPECT_EQ(change->changed["shadow.view_only"],
            std::make_pair(std::string("false"), std::string("true")));
  const std::string dropin = slurp(f.location.server_dropin());
  EXPECT_NE(dropin.find("[shadow]\nview_only = true"), std::string::npos) << dropin;
  EXPECT_NE(dropin.find("[log]\nlevel = debug"), std::string::npos) << dropin;
  // The file on disk gives the same configuration.
  EXPECT_EQ(f.load().string("shadow.view_only"), "true");
  auto described = describe_settings(f.location, f.load());
  EXPECT_EQ(described["origins"]["shadow.view_only"], "server");
  EXPECT_EQ(described["origins"]["shadow.allowed"], "default");
  EXPECT_EQ(described["values"]["log.level"], "debug");
}

TEST(AgentSettingsTest, EmptyDocumentRemovesTheDropin) {
  Fixture f;
  auto first = apply_server_settings(f.location, f.load(), {{"shadow.view_only", "true"}});
  ASSERT_TRUE(first.ok());
  auto second = apply_server_settings(f.location, first->config, {});
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_FALSE(std::filesystem::exists(f.location.server_dropin()));
  EXPECT_EQ(second->config.string("shadow.view_only"), "false");
  EXPECT_EQ(second->changed.size(), 1u);
}

TEST(AgentSettingsTest, AllOrNothing) {
  Fixture f;
  ASSERT_TRUE(apply_server_settings(f.location, f.load(), {{"log.level", "debug"}}).ok());
  const std::string before = slurp(f.location.server_dropin());
  auto refused = apply_server_settings(f.location, f.load(),
                                       {{"shadow.view_only", "true"},
                                        {"no.such", "1"},
                                        {"shadow.prompt_timeout", "forever"},
                                        {"server.url", "wss://evil:1"}});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kBadValue);
  const std::string& m = refused.error().message;
  EXPECT_NE(m.find("no.such: unknown setting"), std::string::npos) << m;
  EXPECT_NE(m.find("shadow.prompt_timeout"), std::string::npos) << m;
  EXPECT_NE(m.find("server.url: can only be set on the device itself"), std::string::npos) << m;
  EXPECT_EQ(slurp(f.location.server_dropin()), before);  // nothing changed
}

TEST(AgentSettingsTest, LocalPolicyCannotBeWeakened) {
  Fixture f(
      "[shadow]\nprompt_user = true\nview_only = true\nallowed = false\nprompt_default = deny\n");
  for (const auto& [key, weaker] :
       std::vector<std::pair<std::string, std::string>>{{"shadow.prompt_user", "false"},
                                                        {"shadow.view_only", "false"},
                                                        {"shadow.allowed", "true"},
                                                        {"shadow.prompt_default", "allow"}}) {
    auto refused = apply_server_settings(f.location, f.load(), {{key, weaker}});
    ASSERT_FALSE(refused.ok()) << key;
    EXPECT_EQ(refused.error().code, Errc::kPermissionDenied);
    EXPECT_NE(refused.error().message.find(key + ": the local configuration ("), std::string::npos)
        << refused.error().message;
    EXPECT_NE(refused.error().message.find("agent.conf:"), std::string::npos);
    EXPECT_FALSE(std::filesystem::exists(f.location.server_dropin()));
  }
  // Restating the safe value, or other settings, is fine.
  EXPECT_TRUE(apply_server_settings(f.location, f.load(), {{"shadow.prompt_user", "true"}}).ok());
  EXPECT_TRUE(apply_server_settings(f.location, f.load(), {{"log.level", "debug"}}).ok());
}

TEST(AgentSettingsTest, DefaultsAreNoFloorButServerCanTighten) {
  Fixture f;  // nothing said locally
  auto looser = apply_server_settings(f.location, f.load(), {{"shadow.prompt_user", "false"}});
  ASSERT_TRUE(looser.ok()) << looser.error().message;
  EXPECT_EQ(looser->config.string("shadow.prompt_user"), "false");

  Fixture g("[shadow]\nprompt_user = false\n");  // local says: do not ask
  auto tighter = apply_server_settings(g.location, g.load(), {{"shadow.prompt_user", "true"}});
  ASSERT_TRUE(tighter.ok()) << tighter.error().message;
  EXPECT_EQ(tighter->config.string("shadow.prompt_user"), "true");
}

TEST(AgentSettingsTest, CommandLineOverridesAreLocalAndWin) {
  Fixture f;
  f.location.overrides = {"shadow.view_only=true"};
  auto refused = apply_server_settings(f.location, f.load(), {{"shadow.view_only", "false"}});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("--set"), std::string::npos) << refused.error().message;
  f.location.overrides = {"log.level=warning"};
  auto ok = apply_server_settings(f.location, f.load(), {{"log.level", "debug"}});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->config.string("log.level"), "warning");  // --set beats every file
  EXPECT_EQ(describe_settings(f.location, ok->config)["origins"]["log.level"], "--set");
}

TEST(AgentSettingsTest, LaterLocalDropinsOverrideTheServers) {
  Fixture f;
  std::filesystem::create_directories(f.location.main_file + ".d");
  f.tmp.write("agent.conf.d/90-local.conf", "[log]\nlevel = error\n");
  auto change = apply_server_settings(f.location, f.load(), {{"log.level", "debug"}});
  ASSERT_TRUE(change.ok());
  EXPECT_EQ(change->config.string("log.level"), "error");
  EXPECT_TRUE(change->changed.empty());
}

}  // namespace
}  // namespace tether::agent
