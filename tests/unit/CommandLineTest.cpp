#include "common/CommandLine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

namespace tether {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const std::vector<OptionSpec>& specs() {
  static const std::vector<OptionSpec> s = {
      {"config", 'c', true, "FILE", "configuration file"},
      {"state-dir", 0, true, "DIR", "state directory"},
      {"set", 0, true, "SECTION.KEY=VALUE", "override a setting"},
      {"verbose", 'v', false, "", "more logging"},
      {"help", 'h', false, "", "show this help"},
      {"timeout", 0, true, "", "how long to wait"},
      {"enrollment-token-file", 0, true, "TOKEN_FILE", "read the token from a file"},
  };
  return s;
}

Result<ParsedArgs> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "prog");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  argv.push_back(nullptr);
  return parse_command_line(static_cast<int>(args.size()), argv.data(), specs());
}

TEST(CommandLineTest, NothingGivenMeansNothingSet) {
  auto r = parse({});
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->positional(), IsEmpty());
  EXPECT_FALSE(r->has("config"));
  EXPECT_FALSE(r->has("verbose"));
  EXPECT_EQ(r->value("config"), std::nullopt);
  EXPECT_THAT(r->values("set"), IsEmpty());
  EXPECT_FALSE(r->has("no-such-option"));
}

TEST(CommandLineTest, OptionsBeforeAndAfterPositionalsAreEquivalent) {
  auto before = parse({"--state-dir", "/var/lib/t", "status"});
  auto after = parse({"status", "--state-dir", "/var/lib/t"});
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(after.ok());
  EXPECT_THAT(before->positional(), ElementsAre("status"));
  EXPECT_THAT(after->positional(), ElementsAre("status"));
  EXPECT_EQ(before->value("state-dir"), "/var/lib/t");
  EXPECT_EQ(after->value("state-dir"), "/var/lib/t");
}

TEST(CommandLineTest, PositionalsKeepTheirOrderAroundOptions) {
  auto r = parse({"a", "-v", "b", "--config=x", "c"});
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->positional(), ElementsAre("a", "b", "c"));
  EXPECT_TRUE(r->has("verbose"));
  EXPECT_EQ(r->value("config"), "x");
}

TEST(CommandLineTest, LongOptionValueForms) {
  auto eq = parse({"--config=/etc/t.conf"});
  ASSERT_TRUE(eq.ok());
  EXPECT_EQ(eq->value("config"), "/etc/t.conf");

  auto sep = parse({"--config", "/etc/t.conf"});
  ASSERT_TRUE(sep.ok());
  EXPECT_EQ(sep->value("config"), "/etc/t.conf");

  // Only the first '=' separates; the value may contain more, or be empty.
  auto more = parse({"--set=agent.name=a=b"});
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(more->value("set"), "agent.name=a=b");
  auto empty = parse({"--config="});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->has("config"));
  EXPECT_EQ(empty->value("config"), "");
}

TEST(CommandLineTest, SeparateValueMayLookLikeAnOption) {
  // A value-taking option consumes the next argument whatever it looks like.
  auto r = parse({"--config", "--verbose"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->value("config"), "--verbose");
  EXPECT_FALSE(r->has("verbose"));
}

TEST(CommandLineTest, ShortOptions) {
  auto r = parse({"-c", "/etc/t.conf", "-v"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->value("config"), "/etc/t.conf");
  EXPECT_TRUE(r->has("verbose"));
  EXPECT_EQ(r->value("verbose"), "");
  EXPECT_THAT(r->positional(), IsEmpty());
}

TEST(CommandLineTest, DoubleDashEndsOptions) {
  auto r = parse({"-v", "--", "--config", "-c", "-", "--"});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->has("verbose"));
  EXPECT_FALSE(r->has("config"));
  EXPECT_THAT(r->positional(), ElementsAre("--config", "-c", "-", "--"));
}

TEST(CommandLineTest, SingleDashIsPositional) {
  auto r = parse({"-", "x"});
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->positional(), ElementsAre("-", "x"));
}

TEST(CommandLineTest, UnknownOptionsAreErrors) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--bogus"}, {"status", "--bogus=1"}, {"-x"}}) {
    auto r = parse(args);
    ASSERT_FALSE(r.ok()) << args.back();
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    EXPECT_THAT(r.error().message, HasSubstr("unknown option"));
    EXPECT_THAT(r.error().message, HasSubstr("--help"));
  }
  EXPECT_THAT(parse({"--bogus=1"}).error().message, HasSubstr("--bogus"));
  EXPECT_THAT(parse({"-x"}).error().message, HasSubstr("-x"));
}

TEST(CommandLineTest, ClusteredShortOptionsAreNotSupported) {
  auto r = parse({"-vh"});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, HasSubstr("-vh"));
  auto attached = parse({"-cfile"});
  ASSERT_FALSE(attached.ok());
  EXPECT_EQ(attached.error().code, Errc::kInvalidArgument);
}

TEST(CommandLineTest, MissingValueIsAnError) {
  auto long_form = parse({"status", "--config"});
  ASSERT_FALSE(long_form.ok());
  EXPECT_EQ(long_form.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(long_form.error().message, "--config needs a value");
  auto short_form = parse({"-c"});
  ASSERT_FALSE(short_form.ok());
  EXPECT_EQ(short_form.error().message, "-c needs a value");
}

TEST(CommandLineTest, ValueGivenToAFlagIsAnError) {
  auto r = parse({"--verbose=yes"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(r.error().message, "--verbose takes no value");
  auto empty = parse({"--help="});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().message, "--help takes no value");
}

TEST(CommandLineTest, RepeatedOptionsKeepOrderAndLastWins) {
  auto r = parse({"--set", "a.b=1", "status", "--set=c.d=2", "--config", "one", "-c", "two",
                  "--set", "a.b=3"});
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->values("set"), ElementsAre("a.b=1", "c.d=2", "a.b=3"));
  EXPECT_EQ(r->value("set"), "a.b=3");
  EXPECT_THAT(r->values("config"), ElementsAre("one", "two"));
  EXPECT_EQ(r->value("config"), "two");
  EXPECT_THAT(r->positional(), ElementsAre("status"));
}

TEST(CommandLineTest, RepeatedFlagsAreCounted) {
  auto r = parse({"-v", "--verbose", "-v"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->values("verbose").size(), 3u);
}

TEST(CommandLineTest, HelpListsEveryOptionOnItsOwnLine) {
  const std::string help = format_options_help(specs());
  std::istringstream in(help);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), specs().size());
  EXPECT_EQ(help.back(), '\n');

  // Short and long names, the value name (or VALUE), and the help text aligned in a column.
  EXPECT_EQ(lines[0].substr(0, 32), "  -c, --config FILE             ");
  EXPECT_EQ(lines[0].substr(32), "configuration file");
  EXPECT_EQ(lines[1].substr(0, 32), "      --state-dir DIR           ");
  EXPECT_EQ(lines[1].substr(32), "state directory");
  EXPECT_EQ(lines[3].substr(0, 32), "  -v, --verbose                 ");
  EXPECT_EQ(lines[5].substr(0, 32), "      --timeout VALUE           ");
  for (std::size_t i = 0; i < lines.size(); ++i) {
    EXPECT_THAT(lines[i], HasSubstr("--" + specs()[i].name));
    EXPECT_THAT(lines[i], HasSubstr(specs()[i].help));
  }
  EXPECT_EQ(lines[2], "      --set SECTION.KEY=VALUE   override a setting");
  // An entry too wide for the column still keeps two spaces before its help.
  EXPECT_EQ(lines[6], "      --enrollment-token-file TOKEN_FILE  read the token from a file");
}

TEST(CommandLineTest, HelpForNoOptionsIsEmpty) {
  EXPECT_EQ(format_options_help({}), "");
}

}  // namespace
}  // namespace tether
