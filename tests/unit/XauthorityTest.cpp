// use_first_readable_xauthority: which X authority file tether-vnc and tether-shadow-ui use.
#include "vnc/Xauthority.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include "TempDir.h"

namespace tether::vnc {
namespace {

// Each test starts from a known XAUTHORITY and the process gets its own back afterwards.
class XauthorityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* value = ::getenv("XAUTHORITY")) saved_ = value;
    ::setenv("XAUTHORITY", kBefore, 1);
  }
  void TearDown() override {
    if (saved_) {
      ::setenv("XAUTHORITY", saved_->c_str(), 1);
    } else {
      ::unsetenv("XAUTHORITY");
    }
  }

  static std::string xauthority() {
    const char* value = ::getenv("XAUTHORITY");
    return value != nullptr ? value : "(unset)";
  }

  static constexpr const char* kBefore = "/before/.Xauthority";
  testing::TempDir dir_;

 private:
  std::optional<std::string> saved_;
};

TEST_F(XauthorityTest, TheFirstReadableFileWins) {
  const auto first = dir_.write("first", "a");
  const auto second = dir_.write("second", "b");
  ASSERT_TRUE(use_first_readable_xauthority({first, second}).ok());
  EXPECT_EQ(xauthority(), first);
}

TEST_F(XauthorityTest, UnreadableFilesAreSkipped) {
  const auto missing = dir_ / "missing";
  const auto dangling = dir_ / "dangling";
  ASSERT_EQ(::symlink((dir_ / "nowhere").c_str(), dangling.c_str()), 0);
  std::vector<std::string> files{missing, dangling};
  // Root reads a mode 000 file all the same: it only counts as unreadable for other users.
  if (::geteuid() != 0) {
    const auto locked = dir_.write("locked", "x");
    ASSERT_EQ(::chmod(locked.c_str(), 0), 0);
    files.push_back(locked);
  }
  const auto readable = dir_.write("readable", "y");
  files.push_back(readable);
  files.push_back(dir_.write("later", "z"));
  ASSERT_TRUE(use_first_readable_xauthority(files).ok());
  EXPECT_EQ(xauthority(), readable);
}

TEST_F(XauthorityTest, NoneReadableIsAnErrorNamingEveryFile) {
  const auto a = dir_ / "a";
  const auto b = dir_ / "b";
  const auto both = use_first_readable_xauthority({a, b});
  ASSERT_FALSE(both.ok());
  EXPECT_EQ(both.error().code, Errc::kNotFound);
  EXPECT_EQ(both.error().message, "cannot read any of " + a + ", " + b);
  EXPECT_EQ(xauthority(), kBefore);

  const auto one = use_first_readable_xauthority({a});
  ASSERT_FALSE(one.ok());
  EXPECT_EQ(one.error().message, "cannot read " + a);
  EXPECT_EQ(xauthority(), kBefore);
}

TEST_F(XauthorityTest, AnEmptyListChangesNothing) {
  ASSERT_TRUE(use_first_readable_xauthority({}).ok());
  EXPECT_EQ(xauthority(), kBefore);
  ::unsetenv("XAUTHORITY");
  ASSERT_TRUE(use_first_readable_xauthority({}).ok());
  EXPECT_EQ(xauthority(), "(unset)");
}

}  // namespace
}  // namespace tether::vnc
