#include "common/FileIo.h"

#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>

#include "tests/unit/TempDir.h"

namespace tether {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::mode_of;
using testing::slurp;
using testing::TempDir;

constexpr uid_t kNobody = 65534;

class UmaskGuard {
 public:
  explicit UmaskGuard(mode_t mask) : old_(::umask(mask)) {}
  ~UmaskGuard() { ::umask(old_); }
  UmaskGuard(const UmaskGuard&) = delete;
  UmaskGuard& operator=(const UmaskGuard&) = delete;

 private:
  mode_t old_;
};

// Runs `fn` in a child process (as uid/gid nobody when `unprivileged` and we are root, since
// root ignores permission bits) and returns its exit code, or 128 + the signal that ended it.
// The child is killed by SIGALRM if it blocks for long: a hang shows as 128 + SIGALRM.
int run_in_child(const std::function<int()>& fn, bool unprivileged = false) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (unprivileged && ::geteuid() == 0) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) {
        ::_exit(99);
      }
    }
    ::alarm(20);
    ::_exit(fn());
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

// ---------------------------------------------------------------- read_file

TEST(FileIoTest, ReadFileReturnsExactBytes) {
  TempDir dir;
  const std::string content("line 1\nbinary \0\x01\xff tail", 21);
  const auto path = dir.write("f", content);
  auto r = read_file(path);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, content);
  EXPECT_EQ(*read_file(dir.write("empty", "")), "");
}

TEST(FileIoTest, ReadFileEnforcesTheSizeLimit) {
  TempDir dir;
  const auto path = dir.write("f", std::string(100, 'x'));
  EXPECT_TRUE(read_file(path, 100).ok());
  auto r = read_file(path, 99);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kTooLarge);
  EXPECT_THAT(r.error().message, HasSubstr(path));
  EXPECT_THAT(r.error().message, HasSubstr("100 bytes"));
  EXPECT_EQ(read_file(path, 0).error().code, Errc::kTooLarge);
  EXPECT_TRUE(read_file(dir.write("empty", ""), 0).ok());
}

TEST(FileIoTest, ReadFileDefaultLimitIsOneMebibyte) {
  TempDir dir;
  EXPECT_TRUE(read_file(dir.write("ok", std::string(1024 * 1024, 'a'))).ok());
  EXPECT_EQ(read_file(dir.write("big", std::string(1024 * 1024 + 1, 'a'))).error().code,
            Errc::kTooLarge);
}

TEST(FileIoTest, ReadFileMissingIsNotFound) {
  TempDir dir;
  auto r = read_file(dir / "nope");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kNotFound);
  EXPECT_THAT(r.error().message, HasSubstr(dir / "nope"));
  EXPECT_EQ(read_file(dir / "nodir/nope").error().code, Errc::kNotFound);
}

TEST(FileIoTest, ReadFileRefusesNonRegularFiles) {
  TempDir dir;
  auto d = read_file(dir.path());
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, Errc::kBadValue);
  EXPECT_THAT(d.error().message, HasSubstr("not a regular file"));
  EXPECT_EQ(read_file("/dev/null").error().code, Errc::kBadValue);
}

TEST(FileIoTest, ReadFileOnAFifoFailsInsteadOfBlocking) {
  TempDir dir;
  const std::string fifo = dir / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Without a writer, a blocking open of a FIFO never returns; the child's alarm catches that.
  const int rc = run_in_child([&] {
    auto r = read_file(fifo);
    if (r.ok()) return 1;
    return r.error().code == Errc::kBadValue ? 0 : 2;
  });
  EXPECT_EQ(rc, 0) << (rc == 128 + SIGALRM ? "read_file blocked on a FIFO" : "wrong result");
}

TEST(FileIoTest, ReadFileFollowsSymlinksUnlessTold) {
  TempDir dir;
  const auto target = dir.write("target", "secret");
  const std::string link = dir / "link";
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  EXPECT_EQ(*read_file(link), "secret");
  auto r = read_file(link, 1024, /*no_follow=*/true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kPermissionDenied);
  EXPECT_THAT(r.error().message, HasSubstr(link));
  EXPECT_THAT(r.error().message, HasSubstr("symlink"));
  EXPECT_EQ(*read_file(target, 1024, true), "secret");
}

TEST(FileIoTest, ReadFileUnreadableIsPermissionDenied) {
  TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  const auto path = dir.write("locked", "x");
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  const int rc = run_in_child(
      [&] {
        auto r = read_file(path);
        if (r.ok()) return 1;
        if (r.error().code != Errc::kPermissionDenied) return 2;
        return r.error().message.find(path) == std::string::npos ? 3 : 0;
      },
      /*unprivileged=*/true);
  EXPECT_EQ(rc, 0);
}

// ---------------------------------------------------------------- write_file_atomic

TEST(FileIoTest, WriteCreatesFileWithContent) {
  TempDir dir;
  const std::string path = dir / "state.json";
  auto st = write_file_atomic(path, "{\"a\":1}", 0644);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(slurp(path), "{\"a\":1}");
  EXPECT_THAT(dir.list(), ElementsAre("state.json"));
}

TEST(FileIoTest, WriteGivesTheExactModeWhateverTheUmask) {
  TempDir dir;
  for (const mode_t mask : {mode_t{0}, mode_t{022}, mode_t{027}, mode_t{077}, mode_t{0777}}) {
    UmaskGuard guard(mask);
    for (const mode_t mode : {mode_t{0600}, mode_t{0400}, mode_t{0640}, mode_t{0644}}) {
      const std::string path = dir / ("f" + std::to_string(mask) + "-" + std::to_string(mode));
      auto st = write_file_atomic(path, "x", mode);
      ASSERT_TRUE(st.ok()) << st.error().message;
      EXPECT_EQ(mode_of(path), mode) << std::oct << "umask " << mask << " mode " << mode;
      // Replacing keeps applying the requested mode, not the old file's.
      const mode_t other = mode == 0600 ? 0644 : 0600;
      ASSERT_TRUE(write_file_atomic(path, "y", other).ok());
      EXPECT_EQ(mode_of(path), other) << std::oct << "umask " << mask << " mode " << other;
      EXPECT_EQ(slurp(path), "y");
    }
  }
}

TEST(FileIoTest, WriteReplacesContentCompletely) {
  TempDir dir;
  const std::string path = dir / "f";
  ASSERT_TRUE(write_file_atomic(path, std::string(5000, 'L'), 0600).ok());
  ASSERT_TRUE(write_file_atomic(path, "short", 0600).ok());
  EXPECT_EQ(slurp(path), "short");
  ASSERT_TRUE(write_file_atomic(path, "", 0600).ok());
  EXPECT_EQ(slurp(path), "");
  const std::string big(3 * 1024 * 1024 + 7, 'b');
  ASSERT_TRUE(write_file_atomic(path, big, 0600).ok());
  EXPECT_EQ(slurp(path), big);
  EXPECT_THAT(dir.list(), ElementsAre("f"));
}

TEST(FileIoTest, WriteReplaceWithoutSyncStillReplacesWholeFilesWithTheMode) {
  TempDir dir;
  const std::string path = dir / "counters.json";
  ASSERT_TRUE(write_file_replace(path, std::string(5000, 'L'), 0600).ok());
  EXPECT_EQ(mode_of(path), mode_t{0600});
  ASSERT_TRUE(write_file_replace(path, "short", 0644).ok());
  EXPECT_EQ(slurp(path), "short");
  EXPECT_EQ(mode_of(path), mode_t{0644});
  EXPECT_THAT(dir.list(), ElementsAre("counters.json"));
}

TEST(FileIoTest, WriteReplacesASymlinkInsteadOfWritingThroughIt) {
  TempDir dir;
  const auto target = dir.write("target", "keep me");
  const std::string link = dir / "link";
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  ASSERT_TRUE(write_file_atomic(link, "new", 0600).ok());
  EXPECT_EQ(slurp(target), "keep me");
  struct stat st {};
  ASSERT_EQ(::lstat(link.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(slurp(link), "new");
}

TEST(FileIoTest, WriteOntoADirectoryFailsAndCleansUp) {
  TempDir dir;
  const std::string path = dir / "d";
  ASSERT_EQ(::mkdir(path.c_str(), 0755), 0);
  dir.write("d/inside", "old");
  auto st = write_file_atomic(path, "new", 0600);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr(path));
  struct stat s {};
  ASSERT_EQ(::lstat(path.c_str(), &s), 0);
  EXPECT_TRUE(S_ISDIR(s.st_mode));
  EXPECT_EQ(slurp(dir / "d/inside"), "old");
  // The temporary file was created beside `path` and must be gone again.
  EXPECT_THAT(dir.list(), ElementsAre("d"));
  EXPECT_THAT(dir.list("d"), ElementsAre("inside"));
}

TEST(FileIoTest, WriteIntoMissingDirectoryFails) {
  TempDir dir;
  auto st = write_file_atomic(dir / "missing/f", "x", 0600);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kNotFound);
  EXPECT_THAT(st.error().message, HasSubstr(dir / "missing/f"));
  EXPECT_TRUE(dir.list().empty());
}

TEST(FileIoTest, WriteIntoUnwritableDirectoryKeepsOldContent) {
  TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  const std::string sub = dir / "ro";
  ASSERT_EQ(::mkdir(sub.c_str(), 0755), 0);
  const auto path = dir.write("ro/f", "old");
  ASSERT_EQ(::chmod(path.c_str(), 0666), 0);  // the file itself is writable; the directory not
  ASSERT_EQ(::chmod(sub.c_str(), 0555), 0);
  const int rc = run_in_child(
      [&] {
        auto st = write_file_atomic(path, "new", 0644);
        if (st.ok()) return 1;
        return st.error().code == Errc::kPermissionDenied ? 0 : 2;
      },
      /*unprivileged=*/true);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(slurp(path), "old");
  EXPECT_THAT(dir.list("ro"), ElementsAre("f"));
}

// ---------------------------------------------------------------- ensure_directory

TEST(FileIoTest, EnsureDirectoryCreatesParents) {
  UmaskGuard guard(022);
  TempDir dir;
  const std::string leaf = dir / "a/b/c";
  auto st = ensure_directory(leaf, 0700);
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(mode_of(leaf), 0700u);
  struct stat s {};
  ASSERT_EQ(::stat((dir / "a/b").c_str(), &s), 0);
  EXPECT_TRUE(S_ISDIR(s.st_mode));
  EXPECT_EQ(mode_of(dir / "a"), 0755u);
  // Idempotent.
  EXPECT_TRUE(ensure_directory(leaf, 0700).ok());
  EXPECT_TRUE(ensure_directory(dir / "a/b/c/", 0700).ok());
}

TEST(FileIoTest, EnsureDirectoryNeverCreatesWiderThanAsked) {
  UmaskGuard guard(0);
  TempDir dir;
  ASSERT_TRUE(ensure_directory(dir / "x", 0700).ok());
  EXPECT_EQ(mode_of(dir / "x"), 0700u);
  ASSERT_TRUE(ensure_directory(dir / "y", 0750).ok());
  EXPECT_EQ(mode_of(dir / "y"), 0750u);
}

TEST(FileIoTest, EnsureDirectoryTightensWiderModes) {
  TempDir dir;
  const std::string d = dir / "d";
  ASSERT_EQ(::mkdir(d.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(d.c_str(), 0777), 0);
  ASSERT_TRUE(ensure_directory(d, 0700).ok());
  EXPECT_EQ(mode_of(d), 0700u);
  // A narrower directory is left as it is.
  ASSERT_EQ(::chmod(d.c_str(), 0500), 0);
  ASSERT_TRUE(ensure_directory(d, 0700).ok());
  EXPECT_EQ(mode_of(d), 0500u);
}

TEST(FileIoTest, EnsureDirectoryWithoutTightenRefusesWiderModes) {
  TempDir dir;
  const std::string d = dir / "d";
  ASSERT_EQ(::mkdir(d.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(d.c_str(), 0755), 0);
  auto st = ensure_directory(d, 0700, /*tighten=*/false);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kPermissionDenied);
  EXPECT_THAT(st.error().message, HasSubstr(d));
  EXPECT_THAT(st.error().message, HasSubstr("0755"));
  EXPECT_EQ(mode_of(d), 0755u);
}

TEST(FileIoTest, EnsureDirectoryRefusesNonDirectories) {
  TempDir dir;
  const auto file = dir.write("file", "x");
  auto st = ensure_directory(file, 0700);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kBadValue);
  EXPECT_THAT(st.error().message, HasSubstr("not a directory"));

  const std::string real = dir / "real";
  const std::string link = dir / "link";
  ASSERT_EQ(::mkdir(real.c_str(), 0700), 0);
  ASSERT_EQ(::symlink(real.c_str(), link.c_str()), 0);
  EXPECT_EQ(ensure_directory(link, 0700).error().code, Errc::kBadValue);

  // A file where a parent should be.
  EXPECT_FALSE(ensure_directory(dir / "file/sub", 0700).ok());
}

TEST(FileIoTest, EnsureDirectoryRefusesSomeoneElsesDirectory) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a directory away";
  TempDir dir;
  const std::string d = dir / "d";
  ASSERT_EQ(::mkdir(d.c_str(), 0700), 0);
  ASSERT_EQ(::chown(d.c_str(), kNobody, kNobody), 0);
  auto st = ensure_directory(d, 0700);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kPermissionDenied);
  EXPECT_THAT(st.error().message, HasSubstr("owned by uid 65534"));
}

// ---------------------------------------------------------------- check_private_file

TEST(FileIoTest, PrivateFileAcceptsOwnerOnlyModes) {
  TempDir dir;
  const auto path = dir.write("key.pem", "k");
  for (const mode_t mode : {mode_t{0600}, mode_t{0400}, mode_t{0700}, mode_t{0200}}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto st = check_private_file(path);
    EXPECT_TRUE(st.ok()) << std::oct << mode << ": " << st.error().message;
  }
}

TEST(FileIoTest, PrivateFileRefusesGroupOrOtherAccess) {
  TempDir dir;
  const auto path = dir.write("key.pem", "k");
  for (const mode_t mode : {mode_t{0644}, mode_t{0640}, mode_t{0604}, mode_t{0660}, mode_t{0610},
                            mode_t{0601}, mode_t{0777}}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto st = check_private_file(path);
    ASSERT_FALSE(st.ok()) << std::oct << mode;
    EXPECT_EQ(st.error().code, Errc::kPermissionDenied);
    EXPECT_THAT(st.error().message, HasSubstr(path));
    EXPECT_THAT(st.error().message, HasSubstr("chmod 600"));
  }
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  EXPECT_THAT(check_private_file(path).error().message, HasSubstr("0644"));
}

TEST(FileIoTest, PrivateFileRefusesSymlinks) {
  TempDir dir;
  const auto target = dir.write("key.pem", "k");
  ASSERT_EQ(::chmod(target.c_str(), 0600), 0);
  const std::string link = dir / "link.pem";
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  auto st = check_private_file(link);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kPermissionDenied);
  EXPECT_THAT(st.error().message, HasSubstr("symlink"));
}

TEST(FileIoTest, PrivateFileRefusesNonRegularFiles) {
  TempDir dir;
  const std::string d = dir / "d";
  ASSERT_EQ(::mkdir(d.c_str(), 0700), 0);
  EXPECT_EQ(check_private_file(d).error().code, Errc::kBadValue);
  const std::string fifo = dir / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(check_private_file(fifo).error().code, Errc::kBadValue);
  EXPECT_EQ(check_private_file("/dev/null").error().code, Errc::kBadValue);
  EXPECT_EQ(check_private_file(dir / "missing").error().code, Errc::kNotFound);
}

TEST(FileIoTest, PrivateFileRefusesSomeoneElsesFile) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a file away";
  TempDir dir;
  const auto path = dir.write("key.pem", "k");
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  ASSERT_EQ(::chown(path.c_str(), kNobody, kNobody), 0);
  auto st = check_private_file(path);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kPermissionDenied);
  EXPECT_THAT(st.error().message, HasSubstr("owned by uid 65534"));
}

// ---------------------------------------------------------------- file_exists, remove_file

TEST(FileIoTest, FileExistsSeesFilesDirectoriesAndDanglingLinks) {
  TempDir dir;
  EXPECT_TRUE(file_exists(dir.write("f", "")));
  EXPECT_TRUE(file_exists(dir.path()));
  EXPECT_FALSE(file_exists(dir / "missing"));
  const std::string link = dir / "dangling";
  ASSERT_EQ(::symlink((dir / "missing").c_str(), link.c_str()), 0);
  EXPECT_TRUE(file_exists(link));
}

TEST(FileIoTest, RemoveFileIgnoresMissing) {
  TempDir dir;
  const auto path = dir.write("f", "x");
  ASSERT_TRUE(remove_file(path).ok());
  EXPECT_FALSE(file_exists(path));
  EXPECT_TRUE(remove_file(path).ok());
  const std::string d = dir / "d";
  ASSERT_EQ(::mkdir(d.c_str(), 0700), 0);
  auto st = remove_file(d);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr(d));
}

}  // namespace
}  // namespace tether
