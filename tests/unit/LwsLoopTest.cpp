#include "common/LwsLoop.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace tether {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

// A plain lws_sul timer, independent of the code under test, that raises a flag: it marks a
// point in the loop's timeline ("everything due before this has run") and bounds every wait.
// lws runs due timers at the start of lws_service() and then polls until the next one is
// due, so the marker also wakes the loop to let lws_service() return at once.
struct Marker {
  lws_sorted_usec_list_t sul{};  // first member: the callback gets its address
  lws_context* ctx = nullptr;
  bool reached = false;

  static void on_expiry(lws_sorted_usec_list_t* sul) {
    auto* self = reinterpret_cast<Marker*>(sul);
    self->reached = true;
    lws_cancel_service(self->ctx);
  }
};

class LwsLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lws_set_log_level(LLL_ERR, nullptr);
    lws_context_creation_info info{};
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.uid = static_cast<uid_t>(-1);
    info.gid = static_cast<gid_t>(-1);
    ctx_.reset(lws_create_context(&info));
    ASSERT_NE(ctx_, nullptr);
  }

  void TearDown() override {
    for (Marker* m : markers_) {
      lws_sul_schedule(ctx_.get(), 0, &m->sul, Marker::on_expiry, LWS_SET_TIMER_USEC_CANCEL);
    }
  }

  Marker& marker_after(std::chrono::microseconds delay) {
    owned_.push_back(std::make_unique<Marker>());
    Marker& m = *owned_.back();
    m.ctx = ctx_.get();
    markers_.push_back(&m);
    lws_sul_schedule(ctx_.get(), 0, &m.sul, Marker::on_expiry, delay.count());
    return m;
  }

  // Services the loop until the marker is reached; a generous second marker and an iteration
  // cap bound it, so a loop that never gets there fails instead of hanging.
  void run_until(const Marker& marker) {
    Marker& guard = marker_after(30s);
    for (int i = 0; i < 10'000'000 && !marker.reached && !guard.reached; ++i) {
      lws_service(ctx_.get(), 0);
    }
    ASSERT_TRUE(marker.reached) << "the loop never got there";
  }

  LwsContextPtr ctx_;
  std::vector<std::unique_ptr<Marker>> owned_;
  std::vector<Marker*> markers_;
};

TEST_F(LwsLoopTest, ScheduledTimerFiresOnce) {
  int fired = 0;
  LwsTimer timer(ctx_.get(), [&] { ++fired; });
  EXPECT_FALSE(timer.pending());
  timer.schedule(1ms);
  EXPECT_TRUE(timer.pending());
  EXPECT_EQ(fired, 0) << "scheduling must not run the callback";

  const Marker& later = marker_after(100ms);
  run_until(later);
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(timer.pending());

  // And not again.
  const Marker& much_later = marker_after(50ms);
  run_until(much_later);
  EXPECT_EQ(fired, 1);
}

TEST_F(LwsLoopTest, ZeroDelayFiresOnTheLoop) {
  bool fired = false;
  LwsTimer timer(ctx_.get(), [&] { fired = true; });
  timer.schedule(0us);
  EXPECT_FALSE(fired) << "never from inside schedule()";
  const Marker& later = marker_after(1ms);
  run_until(later);
  EXPECT_TRUE(fired);
  EXPECT_FALSE(timer.pending());
}

TEST_F(LwsLoopTest, CancelPreventsFiring) {
  int fired = 0;
  LwsTimer timer(ctx_.get(), [&] { ++fired; });
  timer.schedule(1ms);
  timer.cancel();
  EXPECT_FALSE(timer.pending());
  const Marker& later = marker_after(100ms);
  run_until(later);
  EXPECT_EQ(fired, 0);
}

TEST_F(LwsLoopTest, CancelIsHarmlessWhenNothingIsPending) {
  int fired = 0;
  LwsTimer timer(ctx_.get(), [&] { ++fired; });
  timer.cancel();
  timer.cancel();
  timer.schedule(1ms);
  const Marker& later = marker_after(50ms);
  run_until(later);
  EXPECT_EQ(fired, 1);
  timer.cancel();  // after it fired
  EXPECT_FALSE(timer.pending());
}

TEST_F(LwsLoopTest, TimerCanBeScheduledAgainAfterCancel) {
  int fired = 0;
  LwsTimer timer(ctx_.get(), [&] { ++fired; });
  timer.schedule(1ms);
  timer.cancel();
  timer.schedule(2ms);
  EXPECT_TRUE(timer.pending());
  const Marker& later = marker_after(100ms);
  run_until(later);
  EXPECT_EQ(fired, 1);
}

TEST_F(LwsLoopTest, ReschedulingLaterReplacesTheEarlierExpiry) {
  int fired = 0;
  LwsTimer timer(ctx_.get(), [&] { ++fired; });
  timer.schedule(1ms);
  timer.schedule(300ms);
  const Marker& before = marker_after(50ms);
  run_until(before);
  EXPECT_EQ(fired, 0) << "the first expiry must have been replaced";
  EXPECT_TRUE(timer.pending());

  const Marker& after = marker_after(400ms);
  run_until(after);
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(timer.pending());
}

TEST_F(LwsLoopTest, ReschedulingEarlierReplacesTheLaterExpiry) {
  int fired = 0;
  LwsTimer timer(ctx_.get(), [&] { ++fired; });
  timer.schedule(1h);
  timer.schedule(1ms);
  const Marker& later = marker_after(100ms);
  run_until(later);
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(timer.pending()) << "the one-hour expiry must be gone";
}

TEST_F(LwsLoopTest, DestructorCancels) {
  int fired = 0;
  auto timer = std::make_unique<LwsTimer>(ctx_.get(), [&] { ++fired; });
  timer->schedule(1ms);
  timer.reset();  // lws must not keep (and later call through) a pointer to it
  const Marker& later = marker_after(100ms);
  run_until(later);
  EXPECT_EQ(fired, 0);
}

TEST_F(LwsLoopTest, TimersFireInDeadlineOrder) {
  std::vector<std::string> order;
  LwsTimer a(ctx_.get(), [&] { order.push_back("a"); });
  LwsTimer b(ctx_.get(), [&] { order.push_back("b"); });
  LwsTimer c(ctx_.get(), [&] { order.push_back("c"); });
  a.schedule(60ms);
  b.schedule(10ms);
  c.schedule(30ms);
  const Marker& later = marker_after(200ms);
  run_until(later);
  EXPECT_THAT(order, ElementsAre("b", "c", "a"));
}

TEST_F(LwsLoopTest, CallbackMayRescheduleItsOwnTimer) {
  int fired = 0;
  LwsTimer* self = nullptr;
  LwsTimer timer(ctx_.get(), [&] {
    if (++fired < 3) self->schedule(1ms);
  });
  self = &timer;
  timer.schedule(1ms);
  const Marker& later = marker_after(300ms);
  run_until(later);
  EXPECT_EQ(fired, 3);
  EXPECT_FALSE(timer.pending());
}

TEST_F(LwsLoopTest, CallbackMayCancelAnotherTimer) {
  int victim_fired = 0;
  LwsTimer victim(ctx_.get(), [&] { ++victim_fired; });
  LwsTimer killer(ctx_.get(), [&] { victim.cancel(); });
  killer.schedule(1ms);
  victim.schedule(50ms);
  const Marker& later = marker_after(150ms);
  run_until(later);
  EXPECT_EQ(victim_fired, 0);
  EXPECT_FALSE(victim.pending());
}

TEST(LwsLoopLogTest, LwsLinesGoThroughOurLogWithPriorities) {
  ::testing::internal::CaptureStderr();
  route_lws_logging(true);
  lwsl_err("tether test: an error line\n");
  lwsl_warn("tether test: a warning line\n");
  lwsl_notice("[2024/01/01 00:00:00:0000] N: tether test: a notice\n");
  route_lws_logging(false);
  lwsl_notice("tether test: a quiet notice\n");
  lwsl_err("tether test: still an error\n");
  const std::string out = ::testing::internal::GetCapturedStderr();
  lws_set_log_level(LLL_ERR, nullptr);

  EXPECT_THAT(out, HasSubstr("lws: tether test: an error line\n"));
  EXPECT_THAT(out, HasSubstr("lws: tether test: a warning line\n"));
  // The timestamp and level marker lws puts in front are dropped.
  EXPECT_THAT(out, HasSubstr("lws: tether test: a notice\n"));
  EXPECT_THAT(out, Not(HasSubstr("[2024/01/01")));
  // Without `verbose`, notices are filtered out; errors still pass.
  EXPECT_THAT(out, Not(HasSubstr("a quiet notice")));
  EXPECT_THAT(out, HasSubstr("lws: tether test: still an error\n"));
  // Errors and warnings carry their level (a journald prefix, or a word on a terminal).
  EXPECT_THAT(out, ::testing::AnyOf(HasSubstr("<3>lws: tether test: an error line"),
                                    HasSubstr("error: lws: tether test: an error line")));
  EXPECT_THAT(out, ::testing::AnyOf(HasSubstr("<4>lws: tether test: a warning line"),
                                    HasSubstr("warning: lws: tether test: a warning line")));
}

}  // namespace
}  // namespace tether
