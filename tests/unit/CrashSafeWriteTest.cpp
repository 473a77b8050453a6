// SIGKILL at random points while the agent writes its state: a child process writes (an
// atomic file, the device identity, the server's settings drop-in), the parent kills it after
// a random number of microseconds, and then checks that every file parses and holds exactly
// the old content or the new one — never a mix, never missing — and that the temporary files
// of killed writers do not pile up.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "TempDir.h"
#include "agent/AgentConfig.h"
#include "agent/AgentSettings.h"
#include "agent/DeviceIdentity.h"
#include "common/FileIo.h"
#include "platform/Pki.h"

namespace tether::agent {
namespace {

using testing::slurp;
using testing::TempDir;
using Clock = std::chrono::steady_clock;

// Each scenario gets this much time (and at most kMaxIterations kills).
constexpr auto kBudget = std::chrono::milliseconds(3500);
constexpr int kMaxIterations = 300;

struct Tally {
  int iterations = 0;
  int finished = 0;   // the child completed before the kill
  int killed = 0;     // the kill landed while the child was still running
  int mid_write = 0;  // ... and left a temporary file behind (inside write_file_atomic)
  int saw_old = 0;
  int saw_new = 0;
};

std::size_t count_temporaries(const std::string& dir) {
  std::size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().find(".tmp.") != std::string::npos) ++n;
  }
  return n;
}

// Runs `write` in a child; returns the child's run time when it was not killed.
struct ChildOutcome {
  bool killed = false;
  Clock::duration took{};
};

ChildOutcome run_child(const std::function<bool()>& write, std::chrono::microseconds kill_after) {
  const auto start = Clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) _exit(write() ? 0 : 3);
  EXPECT_GT(pid, 0);
  if (kill_after.count() >= 0) {
    std::this_thread::sleep_for(kill_after);
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ChildOutcome out;
  out.took = Clock::now() - start;
  out.killed = WIFSIGNALED(status);
  if (!out.killed) {
    EXPECT_EQ(WEXITSTATUS(status), 0) << "the writer failed";
  }
  return out;
}

// Calibrates the kill window on a few unkilled runs, then kills at random points in it.
// `write(i)` writes generation i; `check(i)` returns 0 (old: generation i-1), 1 (new) or -1.
Tally hammer(const char* what, const std::string& dir, const std::function<bool(int)>& write,
             const std::function<int(int)>& check) {
  Tally t;
  Clock::duration longest{};
  int generation = 0;
  for (int i = 0; i < 3; ++i) {
    ++generation;
    longest = std::max(
        longest, run_child([&] { return write(generation); }, std::chrono::microseconds(-1)).took);
    EXPECT_EQ(check(generation), 1);
  }
  const auto window = std::chrono::duration_cast<std::chrono::microseconds>(longest) * 3 / 2;
  std::mt19937 rng(12345);
  std::uniform_int_distribution<long> delay(0, window.count());
  const auto deadline = Clock::now() + kBudget;
  while (t.iterations < kMaxIterations && Clock::now() < deadline) {
    ++t.iterations;
    const int next = generation + 1;
    const auto out = run_child([&] { return write(next); }, std::chrono::microseconds(delay(rng)));
    const int seen = check(next);
    if (seen < 0) {
      ADD_FAILURE() << what << ": after a kill at iteration " << t.iterations
                    << " the file is neither the old nor the new content";
      break;
    }
    out.killed ? ++t.killed : ++t.finished;
    if (out.killed && count_temporaries(dir) > 0) ++t.mid_write;
    seen == 1 ? ++t.saw_new : ++t.saw_old;
    if (seen == 1) generation = next;
    if (!out.killed) {
      EXPECT_EQ(seen, 1) << what << ": a completed write must be visible";
    }
  }
  std::printf(
      "[ figures ] %s: %d iterations (kill window %ld us): %d killed, %d of them inside the "
      "write (temporary file left), %d completed; afterwards old content %d, new %d\n",
      what, t.iterations, static_cast<long>(window.count()), t.killed, t.mid_write, t.finished,
      t.saw_old, t.saw_new);
  // One more ordinary write sweeps the temporaries of killed writers: they never pile up.
  ++generation;
  EXPECT_TRUE(write(generation));
  EXPECT_EQ(count_temporaries(dir), 0u) << what << ": temporaries of killed writers remain";
  return t;
}

std::string content_of(int generation) {
  // Sizes vary (1 KiB .. 96 KiB) so that kills land in the middle of longer writes too.
  const std::size_t size = 1024 + static_cast<std::size_t>(generation * 7919) % (96 * 1024);
  std::string s = "generation " + std::to_string(generation) + "\n";
  s.resize(size, static_cast<char>('a' + generation % 26));
  return s;
}

TEST(CrashSafeWriteTest, AtomicFileIsOldOrNewAfterSigkill) {
  TempDir tmp;
  const std::string path = tmp / "state.bin";
  ASSERT_TRUE(write_file_atomic(path, content_of(0), 0600).ok());
  const Tally t = hammer(
      "write_file_atomic", tmp.path(),
      [&](int g) { return write_file_atomic(path, content_of(g), 0600).ok(); },
      [&](int g) {
        const std::string now = slurp(path);
        if (now == content_of(g)) return 1;
        return now == content_of(g - 1) ? 0 : -1;
      });
  EXPECT_GT(t.killed, 0);
}

TEST(CrashSafeWriteTest, DeviceIdentityIsOldOrNewAfterSigkill) {
  TempDir tmp;
  const StatePaths paths(tmp / "state");
  auto identity = DeviceIdentity::load_or_create(paths);
  ASSERT_TRUE(identity.ok()) << identity.error().message;
  // Certificates for the same key (as renewal makes them), made before any fork.
  std::vector<std::string> pems;
  for (int i = 0; i < 8; ++i) {
    pki::CertificateRequest req;
    req.common_name = identity->device_id();
    req.usage = pki::CertUsage::kClient;
    req.lifetime = std::chrono::hours(24 * (i + 1));
    auto cert = pki::make_self_signed(identity->key(), req);
    ASSERT_TRUE(cert.ok());
    pems.push_back(pki::certificate_to_pem(cert->get()).value());
  }
  const std::string key_before = slurp(paths.key);
  auto pem_of = [&](int g) { return pems[static_cast<std::size_t>(g) % pems.size()]; };
  const Tally t = hammer(
      "DeviceIdentity::store", paths.dir,
      [&](int g) {
        auto cert = pki::certificate_from_pem(pem_of(g));
        return cert.ok() && identity->store(paths, std::move(cert).value()).ok();
      },
      [&](int g) {
        auto loaded = DeviceIdentity::load(paths);
        if (!loaded.ok()) {
          ADD_FAILURE() << loaded.error().message;
          return -1;
        }
        if (slurp(paths.key) != key_before || loaded->device_id() != identity->device_id()) {
          return -1;
        }
        const std::string cert = loaded->certificate_pem().value();
        if (cert == pem_of(g)) return 1;
        return cert == pem_of(g - 1) ? 0 : -1;
      });
  EXPECT_GT(t.killed, 0);
}

TEST(CrashSafeWriteTest, FirstStartKilledLeavesARecoverableIdentity) {
  // The very first start writes the key, then the self-signed certificate. Killed anywhere
  // in it, the next start must come up with one identity, not refuse forever.
  const auto start = Clock::now();
  std::mt19937 rng(777);
  int iterations = 0, key_only = 0, recovered = 0;
  while (iterations < 60 && Clock::now() - start < std::chrono::milliseconds(2500)) {
    ++iterations;
    TempDir tmp;
    const StatePaths paths(tmp / "state");
    (void)run_child([&] { return DeviceIdentity::load_or_create(paths).ok(); },
                    std::chrono::microseconds(std::uniform_int_distribution<long>(0, 6000)(rng)));
    const bool had_key = file_exists(paths.key);
    if (had_key && !file_exists(paths.cert)) ++key_only;
    const std::string key_before = had_key ? slurp(paths.key) : "";
    auto next = DeviceIdentity::load_or_create(paths);
    ASSERT_TRUE(next.ok()) << "iteration " << iterations << ": " << next.error().message;
    if (had_key) {
      EXPECT_EQ(slurp(paths.key), key_before) << "the key must survive, not be replaced";
    }
    ++recovered;
  }
  std::printf("[ figures ] first start: %d iterations, %d left only the key, %d recovered\n",
              iterations, key_only, recovered);
}

TEST(CrashSafeWriteTest, SettingsDropinIsOldOrNewAfterSigkill) {
  TempDir tmp;
  ConfigLocation location;
  location.main_file = tmp.write("agent.conf", "");
  auto values_of = [](int g) {
    std::map<std::string, std::string> v{{"log.level", g % 2 ? "debug" : "info"},
                                         {"shadow.view_only", g % 3 ? "true" : "false"}};
    // A long (valid) value makes the drop-in larger, and different for every generation.
    v["connection.backoff_cap"] = std::to_string(60 + g) + "s";
    return v;
  };
  auto expected = [&](int g) { return render_dropin(values_of(g)); };
  auto load = [&]() -> Result<Config> { return load_agent_config(location); };
  ASSERT_TRUE(load().ok());
  ASSERT_TRUE(apply_server_settings(location, load().value(), values_of(0)).ok());
  const Tally t = hammer(
      "apply_server_settings", tmp.path() + "/agent.conf.d",
      [&](int g) {
        auto current = load();
        return current.ok() && apply_server_settings(location, *current, values_of(g)).ok();
      },
      [&](int g) {
        auto config = load();
        if (!config.ok()) {
          ADD_FAILURE() << config.error().message;
          return -1;
        }
        const std::string now = slurp(location.server_dropin());
        if (now == expected(g)) return 1;
        return now == expected(g - 1) ? 0 : -1;
      });
  EXPECT_GT(t.killed, 0);
}

}  // namespace
}  // namespace tether::agent
