#include "common/Config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "tests/unit/TempDir.h"

namespace tether {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

const ConfigSchema& test_schema() {
  static const ConfigSchema schema = [] {
    ConfigSchema s;
    s.push_back({"agent.server", SettingType::kEndpoint, "tether.example:8443", "server"});
    s.push_back({"agent.name", SettingType::kString, "thin", "name"});
    s.push_back({"agent.verbose", SettingType::kBool, "false", "verbose"});
    s.push_back({"agent.retries", SettingType::kInteger, "3", "retries", 0, 10});
    s.push_back({"agent.interval", SettingType::kDuration, "30s", "interval", 1000, 3'600'000});
    s.push_back({"agent.mode",
                 SettingType::kEnum,
                 "auto",
                 "mode",
                 0,
                 std::numeric_limits<std::int64_t>::max(),
                 {"auto", "manual", "off"}});
    s.push_back({"discovery.port", SettingType::kInteger, "30005", "port", 1, 65535});
    s.push_back({"discovery.label", SettingType::kString, "", "label", 0, 8});
    return s;
  }();
  return schema;
}

const SettingSpec& spec_of(std::string_view key) {
  for (const auto& s : test_schema()) {
    if (s.key == key) return s;
  }
  ADD_FAILURE() << "no spec " << key;
  return test_schema().front();
}

// ---------------------------------------------------------------- defaults and getters

TEST(ConfigTest, DefaultsComeFromTheSchema) {
  Config config(test_schema());
  EXPECT_EQ(config.string("agent.server"), "tether.example:8443");
  EXPECT_EQ(config.string("agent.name"), "thin");
  EXPECT_FALSE(config.boolean("agent.verbose"));
  EXPECT_EQ(config.integer("agent.retries"), 3);
  EXPECT_EQ(config.duration("agent.interval"), 30s);
  EXPECT_EQ(config.string("agent.mode"), "auto");
  EXPECT_EQ(config.integer("discovery.port"), 30005);
  EXPECT_EQ(config.origin("agent.name"), "default");
  EXPECT_EQ(config.origin("discovery.port"), "default");
  EXPECT_TRUE(config.files_read().empty());
  EXPECT_EQ(&config.schema(), &test_schema());
}

TEST(ConfigTest, SpecLooksUpExactKeys) {
  Config config(test_schema());
  ASSERT_NE(config.spec("agent.retries"), nullptr);
  EXPECT_EQ(config.spec("agent.retries")->type, SettingType::kInteger);
  EXPECT_EQ(config.spec("agent.nope"), nullptr);
  EXPECT_EQ(config.spec("agent"), nullptr);
}

TEST(ConfigTest, SetValidatesNormalisesAndRecordsOrigin) {
  Config config(test_schema());
  ASSERT_TRUE(config.set("agent.verbose", "Yes", "here").ok());
  EXPECT_TRUE(config.boolean("agent.verbose"));
  EXPECT_EQ(config.string("agent.verbose"), "true");
  EXPECT_EQ(config.origin("agent.verbose"), "here");

  auto bad = config.set("agent.retries", "11", "there:4");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::kBadValue);
  EXPECT_THAT(bad.error().message, StartsWith("there:4: agent.retries"));
  EXPECT_EQ(config.integer("agent.retries"), 3) << "a rejected value must not be stored";
  EXPECT_EQ(config.origin("agent.retries"), "default");

  auto unknown = config.set("agent.bogus", "1", "x");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.error().message, HasSubstr("agent.bogus"));
}

// ---------------------------------------------------------------- validate_setting by type

TEST(ConfigTest, BooleansAcceptTheDocumentedSpellings) {
  const auto& spec = spec_of("agent.verbose");
  for (const char* t : {"true", "TRUE", "yes", "Yes", "on", "ON", "1"}) {
    auto r = validate_setting(spec, t);
    ASSERT_TRUE(r.ok()) << t;
    EXPECT_EQ(*r, "true") << t;
  }
  for (const char* f : {"false", "False", "no", "NO", "off", "Off", "0"}) {
    auto r = validate_setting(spec, f);
    ASSERT_TRUE(r.ok()) << f;
    EXPECT_EQ(*r, "false") << f;
  }
  for (const char* b : {"", "2", "y", "n", "enabled", "truee", " true"}) {
    auto r = validate_setting(spec, b);
    ASSERT_FALSE(r.ok()) << b;
    EXPECT_EQ(r.error().code, Errc::kBadValue);
    EXPECT_THAT(r.error().message, StartsWith("agent.verbose"));
  }
  EXPECT_EQ(*parse_bool("On"), true);
  EXPECT_EQ(*parse_bool("oFF"), false);
  EXPECT_THAT(parse_bool("maybe").error().message, HasSubstr("maybe"));
}

TEST(ConfigTest, IntegersAreRangeCheckedAndNormalised) {
  const auto& spec = spec_of("agent.retries");
  EXPECT_EQ(*validate_setting(spec, "0"), "0");
  EXPECT_EQ(*validate_setting(spec, "10"), "10");
  EXPECT_EQ(*validate_setting(spec, "007"), "7");
  auto high = validate_setting(spec, "11");
  ASSERT_FALSE(high.ok());
  EXPECT_THAT(high.error().message, HasSubstr("between 0 and 10"));
  EXPECT_FALSE(validate_setting(spec, "-1").ok());
  for (const char* b : {"", "x", "5x", "0x5", "1e1", "5.0", "+5", " 5", "99999999999999999999"}) {
    auto r = validate_setting(spec, b);
    ASSERT_FALSE(r.ok()) << b;
    EXPECT_EQ(r.error().code, Errc::kBadValue);
    EXPECT_THAT(r.error().message, StartsWith("agent.retries"));
  }
  SettingSpec negative{"a.b", SettingType::kInteger, "0", "", -5, 5};
  EXPECT_EQ(*validate_setting(negative, "-5"), "-5");
  EXPECT_FALSE(validate_setting(negative, "-6").ok());
}

TEST(ConfigTest, DurationsAreParsedAndRangeChecked) {
  const auto& spec = spec_of("agent.interval");
  EXPECT_TRUE(validate_setting(spec, "1s").ok());
  EXPECT_TRUE(validate_setting(spec, "1000ms").ok());
  EXPECT_TRUE(validate_setting(spec, "1h").ok());
  EXPECT_TRUE(validate_setting(spec, "90").ok());
  auto low = validate_setting(spec, "999ms");
  ASSERT_FALSE(low.ok());
  EXPECT_THAT(low.error().message, HasSubstr("between 1s and 1h"));
  EXPECT_FALSE(validate_setting(spec, "61m").ok());
  auto bad = validate_setting(spec, "soon");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.error().message, StartsWith("agent.interval"));
  EXPECT_THAT(bad.error().message, HasSubstr("soon"));

  Config config(test_schema());
  ASSERT_TRUE(config.set("agent.interval", "5m", "t").ok());
  EXPECT_EQ(config.duration("agent.interval"), 5min);
  ASSERT_TRUE(config.set("agent.interval", "1500ms", "t").ok());
  EXPECT_EQ(config.duration("agent.interval"), 1500ms);
}

TEST(ConfigTest, EnumsAreCaseInsensitiveAndListChoices) {
  const auto& spec = spec_of("agent.mode");
  EXPECT_EQ(*validate_setting(spec, "manual"), "manual");
  EXPECT_EQ(*validate_setting(spec, "OFF"), "off");
  auto bad = validate_setting(spec, "sometimes");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::kBadValue);
  EXPECT_THAT(bad.error().message, HasSubstr("agent.mode"));
  EXPECT_THAT(bad.error().message, HasSubstr("auto, manual, off"));
  EXPECT_FALSE(validate_setting(spec, "").ok());
}

TEST(ConfigTest, EndpointsAcceptHostPortAndBracketedV6) {
  const auto& spec = spec_of("agent.server");
  for (const char* ok :
       {"host:1", "server.example:8443", "10.0.0.1:65535", "[::1]:8443", "[fe80::1]:1"}) {
    EXPECT_TRUE(validate_setting(spec, ok).ok()) << ok;
  }
  for (const char* b : {"host", "host:", "host:0", "host:65536", "host:abc", "host:80x", ":80",
                        "[::1]", "[::1]80", "[::1]:", "[]:80", "::1:80", "[::1:80", ""}) {
    auto r = validate_setting(spec, b);
    ASSERT_FALSE(r.ok()) << b;
    EXPECT_EQ(r.error().code, Errc::kBadValue) << b;
    EXPECT_THAT(r.error().message, StartsWith("agent.server")) << b;
  }

  auto v4 = parse_endpoint("10.1.2.3:30005");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->host, "10.1.2.3");
  EXPECT_EQ(v4->port, 30005);
  auto v6 = parse_endpoint("[2001:db8::7]:443");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "2001:db8::7");
  EXPECT_EQ(v6->port, 443);
  EXPECT_THAT(parse_endpoint("::1:80").error().message, HasSubstr("[ADDRESS]:PORT"));
}

TEST(ConfigTest, StringsRejectControlCharactersAndRespectMax) {
  const auto& name = spec_of("agent.name");
  EXPECT_EQ(*validate_setting(name, "a b=c;#"), "a b=c;#");
  EXPECT_EQ(*validate_setting(name, ""), "");
  EXPECT_FALSE(validate_setting(name, "a\tb").ok());
  EXPECT_FALSE(validate_setting(name, "a\x7f").ok());
  EXPECT_FALSE(validate_setting(name, std::string("a\0b", 3)).ok());
  EXPECT_TRUE(validate_setting(name, std::string(4096, 'x')).ok());
  EXPECT_FALSE(validate_setting(name, std::string(4097, 'x')).ok());
  const auto& label = spec_of("discovery.label");  // max 8
  EXPECT_TRUE(validate_setting(label, "12345678").ok());
  auto longer = validate_setting(label, "123456789");
  ASSERT_FALSE(longer.ok());
  EXPECT_THAT(longer.error().message, HasSubstr("discovery.label"));
  // Control characters are refused for every type, before type checks.
  EXPECT_FALSE(validate_setting(spec_of("agent.retries"), "5\n").ok());
}

// ---------------------------------------------------------------- apply_ini

TEST(ConfigTest, AppliesIniWithCommentsCaseAndWhitespace) {
  Config config(test_schema());
  const std::string ini =
      "; a comment\n"
      "# another comment\n"
      "\n"
      "[Agent]\n"
      "  Name =  kiosk 7  \n"
      "VERBOSE=on\r\n"
      "retries : 5\n"
      "[discovery]\n"
      "port = 40000\n";
  auto st = config.apply_ini(ini, "test.conf");
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(config.string("agent.name"), "kiosk 7");
  EXPECT_TRUE(config.boolean("agent.verbose"));
  EXPECT_EQ(config.integer("agent.retries"), 5);
  EXPECT_EQ(config.integer("discovery.port"), 40000);
  EXPECT_EQ(config.origin("agent.name"), "test.conf:5");
  EXPECT_EQ(config.origin("agent.verbose"), "test.conf:6");
  EXPECT_EQ(config.origin("agent.retries"), "test.conf:7");
  EXPECT_EQ(config.origin("discovery.port"), "test.conf:9");
  EXPECT_EQ(config.origin("agent.mode"), "default");
}

TEST(ConfigTest, LaterValueInTheSameFileWins) {
  Config config(test_schema());
  ASSERT_TRUE(config.apply_ini("[agent]\nretries=1\nretries=2\n", "f").ok());
  EXPECT_EQ(config.integer("agent.retries"), 2);
  EXPECT_EQ(config.origin("agent.retries"), "f:3");
}

TEST(ConfigTest, InlineSemicolonIsPartOfTheValue) {
  Config config(test_schema());
  ASSERT_TRUE(config.apply_ini("[agent]\nname = a ; b\n", "f").ok());
  EXPECT_EQ(config.string("agent.name"), "a ; b");
}

TEST(ConfigTest, EmptyDocumentIsFine) {
  Config config(test_schema());
  EXPECT_TRUE(config.apply_ini("", "f").ok());
  EXPECT_TRUE(config.apply_ini("\n\n; only comments\n", "f").ok());
}

TEST(ConfigTest, UnknownSectionIsNamedWithFileAndLine) {
  Config config(test_schema());
  auto st = config.apply_ini("[agent]\nname = x\n\n[nope]\nname = y\n", "/etc/t.conf");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kBadValue);
  EXPECT_EQ(st.error().message, "/etc/t.conf:5: unknown section [nope]");
}

TEST(ConfigTest, UnknownKeyInKnownSectionIsNamedWithFileAndLine) {
  Config config(test_schema());
  auto st = config.apply_ini("[agent]\nname = x\nbogus = 1\n", "/etc/t.conf");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kBadValue);
  EXPECT_EQ(st.error().message, "/etc/t.conf:3: unknown key \"bogus\" in section [agent]");
}

TEST(ConfigTest, SectionPrefixIsNotMistakenForASection) {
  // "agen" is a prefix of "agent" but not a section of the schema.
  Config config(test_schema());
  auto st = config.apply_ini("[agen]\nt.name = x\n", "f");
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr("unknown section [agen]"));
}

TEST(ConfigTest, KeyOutsideSectionIsAnError) {
  Config config(test_schema());
  auto st = config.apply_ini("; header\nname = x\n[agent]\n", "f.conf");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kBadValue);
  EXPECT_EQ(st.error().message, "f.conf:2: \"name\" is outside a [section]");
}

TEST(ConfigTest, MalformedLinesAreErrorsWithTheirLine) {
  for (const char* line : {"just words", "[agent", "=value", "name"}) {
    Config config(test_schema());
    const std::string ini = std::string("[agent]\nname = ok\n") + line + "\nretries = 4\n";
    auto st = config.apply_ini(ini, "m.conf");
    ASSERT_FALSE(st.ok()) << line;
    EXPECT_EQ(st.error().code, Errc::kBadValue) << line;
    EXPECT_THAT(st.error().message, StartsWith("m.conf:3: ")) << line;
    EXPECT_EQ(config.integer("agent.retries"), 3) << "parsing stops at the first error";
  }
}

TEST(ConfigTest, BadValueNamesFileLineAndKey) {
  Config config(test_schema());
  auto st = config.apply_ini("[agent]\n\nretries = lots\n", "v.conf");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kBadValue);
  EXPECT_THAT(st.error().message, StartsWith("v.conf:3: agent.retries"));
  EXPECT_THAT(st.error().message, HasSubstr("lots"));
}

TEST(ConfigTest, LongLinesUpToTheLimitAreAccepted) {
  // Realistic lines (long paths, URLs, lists) are far longer than inih's small default
  // buffer; everything up to the documented limit must parse.
  for (std::size_t len : {200u, 1000u, 4093u}) {
    for (const char* eol : {"\n", "\r\n", ""}) {
      Config config(test_schema());
      const std::string prefix = "name=";
      const std::string value(len - prefix.size(), 'v');
      auto st = config.apply_ini("[agent]\n" + prefix + value + eol, "f");
      ASSERT_TRUE(st.ok()) << len << ": " << st.error().message;
      EXPECT_EQ(config.string("agent.name"), value);
    }
  }
}

TEST(ConfigTest, OverlongLineIsAnErrorNamingItsLine) {
  for (std::size_t len : {4094u, 4095u, 4096u, 10000u}) {
    for (const char* eol : {"\n", "\r\n", ""}) {
      Config config(test_schema());
      const std::string line = "name=" + std::string(len - 5, 'v');
      auto st = config.apply_ini("[agent]\n; c\n" + line + eol + "retries=4\n", "long.conf");
      ASSERT_FALSE(st.ok()) << len;
      EXPECT_EQ(st.error().code, Errc::kBadValue);
      EXPECT_EQ(st.error().message, "long.conf:3: line longer than 4093 characters") << len;
      EXPECT_EQ(config.string("agent.name"), "thin");
      EXPECT_EQ(config.integer("agent.retries"), 3);
    }
  }
}

TEST(ConfigTest, NulByteIsAnErrorNotATruncation) {
  Config config(test_schema());
  const std::string ini("[agent]\nname = ab\0cd\n", 21);
  auto st = config.apply_ini(ini, "nul.conf");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kBadValue);
  EXPECT_THAT(st.error().message, StartsWith("nul.conf:2: "));
  EXPECT_EQ(config.string("agent.name"), "thin");
}

// ---------------------------------------------------------------- load: files, drop-ins, --set

class ConfigLoadTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  std::string main_ = dir_ / "tether.conf";
  std::string dropins_ = dir_ / "tether.conf.d";
};

TEST_F(ConfigLoadTest, ReadsMainFile) {
  dir_.write("tether.conf", "[agent]\nretries = 7\n");
  auto config = Config::load(test_schema(), {main_, true, {}});
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->integer("agent.retries"), 7);
  EXPECT_EQ(config->origin("agent.retries"), main_ + ":2");
  EXPECT_EQ(config->files_read(), std::vector<std::string>{main_});
}

TEST_F(ConfigLoadTest, MissingRequiredMainFileIsNotFound) {
  auto config = Config::load(test_schema(), {main_, true, {}});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().code, Errc::kNotFound);
  EXPECT_THAT(config.error().message, HasSubstr(main_));
}

TEST_F(ConfigLoadTest, MissingOptionalMainFileGivesDefaults) {
  auto config = Config::load(test_schema(), {main_, false, {}});
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->integer("agent.retries"), 3);
  EXPECT_EQ(config->origin("agent.retries"), "default");
  EXPECT_TRUE(config->files_read().empty());
}

TEST_F(ConfigLoadTest, NoMainFileAtAllGivesDefaults) {
  auto config = Config::load(test_schema(), {});
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->string("agent.name"), "thin");
}

TEST_F(ConfigLoadTest, DropInsAreReadInLexicalOrderAndLaterWins) {
  dir_.write("tether.conf", "[agent]\nretries = 1\nname = main\nmode = off\n");
  ASSERT_EQ(::mkdir(dropins_.c_str(), 0755), 0);
  // Created out of order on purpose: directory order must not matter.
  dir_.write("tether.conf.d/20-b.conf", "[agent]\nretries = 3\n");
  dir_.write("tether.conf.d/10-a.conf", "[agent]\nretries = 2\nname = ten\n");
  dir_.write("tether.conf.d/9-z.conf", "[agent]\n\nmode = manual\n");
  // Not drop-ins: hidden, wrong suffix, backup copies.
  dir_.write("tether.conf.d/.hidden.conf", "[agent]\nretries = 9\n");
  dir_.write("tether.conf.d/notes.txt", "not ini at all");
  dir_.write("tether.conf.d/30-c.conf.bak", "[agent]\nretries = 8\n");
  dir_.write("tether.conf.d/conf", "[agent]\nretries = 8\n");

  auto config = Config::load(test_schema(), {main_, true, {}});
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->integer("agent.retries"), 3);
  EXPECT_EQ(config->origin("agent.retries"), dropins_ + "/20-b.conf:2");
  EXPECT_EQ(config->string("agent.name"), "ten");
  EXPECT_EQ(config->origin("agent.name"), dropins_ + "/10-a.conf:3");
  // "9-z" sorts after "20-b" lexically (not numerically).
  EXPECT_EQ(config->string("agent.mode"), "manual");
  EXPECT_EQ(config->origin("agent.mode"), dropins_ + "/9-z.conf:3");
  EXPECT_EQ(config->files_read(),
            (std::vector<std::string>{main_, dropins_ + "/10-a.conf", dropins_ + "/20-b.conf",
                                      dropins_ + "/9-z.conf"}));
}

TEST_F(ConfigLoadTest, DropInsAreReadWhenTheOptionalMainFileIsAbsent) {
  ASSERT_EQ(::mkdir(dropins_.c_str(), 0755), 0);
  dir_.write("tether.conf.d/a.conf", "[discovery]\nport = 1234\n");
  auto config = Config::load(test_schema(), {main_, false, {}});
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->integer("discovery.port"), 1234);
  EXPECT_EQ(config->files_read(), std::vector<std::string>{dropins_ + "/a.conf"});
}

TEST_F(ConfigLoadTest, ErrorInDropInNamesTheDropIn) {
  dir_.write("tether.conf", "[agent]\nretries = 1\n");
  ASSERT_EQ(::mkdir(dropins_.c_str(), 0755), 0);
  dir_.write("tether.conf.d/50-x.conf", "[agent]\n# fine\nbogus = 1\n");
  auto config = Config::load(test_schema(), {main_, true, {}});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().message,
            dropins_ + "/50-x.conf:3: unknown key \"bogus\" in section [agent]");
}

TEST_F(ConfigLoadTest, ErrorInMainFileNamesIt) {
  dir_.write("tether.conf", "[agent]\nretries = 100\n");
  auto config = Config::load(test_schema(), {main_, false, {}});
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.error().message, StartsWith(main_ + ":2: agent.retries"));
}

TEST_F(ConfigLoadTest, MainFileThatIsADirectoryIsAnError) {
  ASSERT_EQ(::mkdir(main_.c_str(), 0755), 0);
  auto config = Config::load(test_schema(), {main_, false, {}});
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.error().message, HasSubstr(main_));
}

TEST_F(ConfigLoadTest, OverridesComeLastAndNameTheirOrigin) {
  dir_.write("tether.conf", "[agent]\nretries = 1\nname = file\n");
  ASSERT_EQ(::mkdir(dropins_.c_str(), 0755), 0);
  dir_.write("tether.conf.d/a.conf", "[agent]\nretries = 2\n");
  auto config = Config::load(
      test_schema(),
      {main_, true, {"agent.retries=5", "Agent.Verbose=yes", "agent.name=a=b", "agent.retries=6"}});
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->integer("agent.retries"), 6);
  EXPECT_THAT(config->origin("agent.retries"), StartsWith("--set"));
  EXPECT_THAT(config->origin("agent.retries"), HasSubstr("agent.retries"));
  EXPECT_TRUE(config->boolean("agent.verbose"));
  EXPECT_EQ(config->string("agent.name"), "a=b");
  EXPECT_EQ(config->origin("discovery.port"), "default");
}

TEST_F(ConfigLoadTest, MalformedOverridesAreRejected) {
  for (const char* ov : {"noequals", "nodot=5", "agent=x.y", ""}) {
    auto config = Config::load(test_schema(), {"", false, {ov}});
    ASSERT_FALSE(config.ok()) << ov;
    EXPECT_EQ(config.error().code, Errc::kInvalidArgument) << ov;
    EXPECT_THAT(config.error().message, HasSubstr("SECTION.KEY=VALUE")) << ov;
  }
}

TEST_F(ConfigLoadTest, OverrideErrorsNameTheArgument) {
  auto unknown = Config::load(test_schema(), {"", false, {"agent.bogus=1"}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.error().message, HasSubstr("--set agent.bogus"));
  auto bad = Config::load(test_schema(), {"", false, {"agent.retries=-1"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::kBadValue);
  EXPECT_THAT(bad.error().message, StartsWith("--set agent.retries: agent.retries"));
}

TEST_F(ConfigLoadTest, OversizedFileIsRefused) {
  std::string big = "[agent]\n";
  while (big.size() <= 1024 * 1024) big += "; " + std::string(1000, 'c') + "\n";
  dir_.write("tether.conf", big);
  auto config = Config::load(test_schema(), {main_, true, {}});
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().code, Errc::kTooLarge);
  EXPECT_THAT(config.error().message, HasSubstr(main_));
}

}  // namespace
}  // namespace tether
