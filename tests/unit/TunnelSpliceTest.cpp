#include "server/TunnelSplice.h"

#include <gtest/gtest.h>

#include <string>
#include <variant>
#include <vector>

namespace tether::server {
namespace {

class RecordingIo : public TunnelEndIo {
 public:
  void request_writable(TunnelEnd end) override { ++writable[static_cast<int>(end)]; }
  void set_receiving(TunnelEnd end, bool receiving) override {
    toggles.emplace_back(end, receiving);
  }
  int writable[2] = {0, 0};
  std::vector<std::pair<TunnelEnd, bool>> toggles;
};

constexpr TunnelEnd kDevice = TunnelEnd::kDevice;
constexpr TunnelEnd kViewer = TunnelEnd::kViewer;

// Everything the splice has for `end` until it says nothing or close.
std::string drain(TunnelSplice& splice, TunnelEnd end,
                  std::optional<TunnelSplice::Close>* close = nullptr) {
  std::string out;
  while (true) {
    auto action = splice.take(end);
    if (auto* w = std::get_if<TunnelSplice::Write>(&action)) {
      out += w->data;
      continue;
    }
    if (auto* c = std::get_if<TunnelSplice::Close>(&action)) {
      if (close) *close = *c;
    }
    return out;
  }
}

TEST(TunnelSpliceTest, CopiesBothWaysInOrderAndCountsBytes) {
  RecordingIo io;
  TunnelSplice splice(io);
  splice.attach(kDevice);
  EXPECT_FALSE(splice.spliced());
  splice.attach(kViewer);
  EXPECT_TRUE(splice.spliced());
  splice.received(kDevice, "RFB 003.008\n");
  splice.received(kDevice, "more");
  splice.received(kViewer, "RFB 003.008\n");
  EXPECT_GE(io.writable[1], 1);
  EXPECT_GE(io.writable[0], 1);
  EXPECT_EQ(splice.queued(kViewer), 16u);
  EXPECT_EQ(drain(splice, kViewer), "RFB 003.008\nmore");
  EXPECT_EQ(drain(splice, kDevice), "RFB 003.008\n");
  EXPECT_EQ(splice.bytes_to(kViewer), 16u);
  EXPECT_EQ(splice.bytes_to(kDevice), 12u);
  EXPECT_EQ(splice.queued(kViewer), 0u);
}

TEST(TunnelSpliceTest, SplitsLargeInputIntoBoundedMessages) {
  RecordingIo io;
  TunnelLimits limits;
  limits.max_message = 1000;
  TunnelSplice splice(io, limits);
  splice.attach(kDevice);
  splice.attach(kViewer);
  std::string big(3500, 'x');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  splice.received(kDevice, big);
  std::string joined;
  std::vector<std::size_t> sizes;
  while (true) {
    auto action = splice.take(kViewer);
    auto* w = std::get_if<TunnelSplice::Write>(&action);
    if (w == nullptr) break;
    sizes.push_back(w->data.size());
    joined += w->data;
  }
  EXPECT_EQ(joined, big);
  EXPECT_EQ(sizes, (std::vector<std::size_t>{1000, 1000, 1000, 500}));
}

TEST(TunnelSpliceTest, BuffersAnEarlyEndUntilItsPeerArrives) {
  RecordingIo io;
  TunnelSplice splice(io);
  splice.attach(kDevice);
  splice.received(kDevice, "RFB 003.008\n");  // the RFB server speaks first
  EXPECT_EQ(io.writable[1], 0);               // nobody to write to yet
  EXPECT_TRUE(std::holds_alternative<std::monostate>(splice.take(kViewer)));
  splice.attach(kViewer);
  EXPECT_EQ(io.writable[1], 1);
  EXPECT_EQ(drain(splice, kViewer), "RFB 003.008\n");
}

TEST(TunnelSpliceTest, PausesTheSenderAboveTheLimitAndResumesBelowHalf) {
  RecordingIo io;
  TunnelLimits limits;
  limits.max_queued = 1000;
  limits.max_message = 100;
  TunnelSplice splice(io, limits);
  splice.attach(kDevice);
  splice.attach(kViewer);
  splice.received(kDevice, std::string(1000, 'a'));
  EXPECT_TRUE(io.toggles.empty()) << "at the limit is not above it";
  splice.received(kDevice, std::string(100, 'b'));
  ASSERT_EQ(io.toggles.size(), 1u);
  EXPECT_EQ(io.toggles[0], std::make_pair(kDevice, false));
  EXPECT_TRUE(splice.paused(kDevice));
  // More may still arrive from lws's buffer: queued, no second toggle.
  splice.received(kDevice, std::string(50, 'c'));
  EXPECT_EQ(io.toggles.size(), 1u);
  EXPECT_EQ(splice.queued(kViewer), 1150u);
  // Draining to 600 (not below half) keeps it paused; below 500 resumes.
  for (int i = 0; i < 5; ++i) (void)splice.take(kViewer);
  EXPECT_EQ(splice.queued(kViewer), 650u);
  EXPECT_EQ(io.toggles.size(), 1u);
  (void)splice.take(kViewer);
  (void)splice.take(kViewer);
  EXPECT_EQ(splice.queued(kViewer), 450u);
  ASSERT_EQ(io.toggles.size(), 2u);
  EXPECT_EQ(io.toggles[1], std::make_pair(kDevice, true));
  EXPECT_FALSE(splice.paused(kDevice));
  // The viewer direction is independent.
  splice.received(kViewer, std::string(1001, 'v'));
  ASSERT_EQ(io.toggles.size(), 3u);
  EXPECT_EQ(io.toggles[2], std::make_pair(kViewer, false));
}

TEST(TunnelSpliceTest, AnEarlyEndIsPausedTooSoItsBufferStaysBounded) {
  RecordingIo io;
  TunnelLimits limits;
  limits.max_queued = 300;
  TunnelSplice splice(io, limits);
  splice.attach(kDevice);
  splice.received(kDevice, std::string(301, 'a'));
  ASSERT_EQ(io.toggles.size(), 1u);
  EXPECT_EQ(io.toggles[0], std::make_pair(kDevice, false));
  splice.attach(kViewer);
  EXPECT_EQ(drain(splice, kViewer).size(), 301u);
  ASSERT_EQ(io.toggles.size(), 2u);
  EXPECT_EQ(io.toggles[1], std::make_pair(kDevice, true));
}

TEST(TunnelSpliceTest, FlushesToThePeerThenClosesItWithTheReason) {
  RecordingIo io;
  TunnelSplice splice(io);
  splice.attach(kDevice);
  splice.attach(kViewer);
  splice.received(kDevice, "last frame");
  splice.detach(kDevice);
  EXPECT_TRUE(splice.gone(kDevice));
  EXPECT_EQ(splice.first_gone(), kDevice);
  std::optional<TunnelSplice::Close> close;
  EXPECT_EQ(drain(splice, kViewer, &close), "last frame");
  ASSERT_TRUE(close);
  EXPECT_EQ(close->code, 1000);
  EXPECT_EQ(close->reason, "device_closed");
  // Data from an end whose peer is gone is dropped.
  splice.received(kViewer, "late");
  EXPECT_EQ(splice.queued(kDevice), 0u);
}

TEST(TunnelSpliceTest, ViewerLeavingClosesTheDeviceWithViewerClosed) {
  RecordingIo io;
  TunnelSplice splice(io);
  splice.attach(kDevice);
  splice.attach(kViewer);
  splice.received(kDevice, std::string(10, 'x'));  // queued toward the viewer: dropped
  splice.detach(kViewer);
  std::optional<TunnelSplice::Close> close;
  EXPECT_EQ(drain(splice, kDevice, &close), "");
  ASSERT_TRUE(close);
  EXPECT_EQ(close->reason, "viewer_closed");
  EXPECT_EQ(splice.queued(kViewer), 0u);
}

TEST(TunnelSpliceTest, DetachResumesAPausedPeerSoItsCloseCompletes) {
  RecordingIo io;
  TunnelLimits limits;
  limits.max_queued = 10;
  TunnelSplice splice(io, limits);
  splice.attach(kDevice);
  splice.attach(kViewer);
  splice.received(kDevice, std::string(11, 'x'));
  ASSERT_TRUE(splice.paused(kDevice));
  splice.detach(kViewer);
  EXPECT_FALSE(splice.paused(kDevice));
  EXPECT_EQ(io.toggles.back(), std::make_pair(kDevice, true));
}

TEST(TunnelSpliceTest, APeerThatLeftBeforeTheOtherArrivedClosesTheNewcomer) {
  RecordingIo io;
  TunnelSplice splice(io);
  splice.attach(kDevice);
  splice.received(kDevice, "hello");
  splice.detach(kDevice);
  splice.attach(kViewer);
  std::optional<TunnelSplice::Close> close;
  // What was queued toward the viewer belonged to the gone device's queue? No: it was queued
  // toward the viewer, which is delivered before the close.
  EXPECT_EQ(drain(splice, kViewer, &close), "hello");
  ASSERT_TRUE(close);
  EXPECT_EQ(close->reason, "device_closed");
}

TEST(TunnelSpliceTest, TextClosesTheSenderWith1003) {
  RecordingIo io;
  TunnelSplice splice(io);
  splice.attach(kDevice);
  splice.attach(kViewer);
  splice.received(kDevice, "queued");
  splice.received_text(kViewer);
  std::optional<TunnelSplice::Close> close;
  EXPECT_EQ(drain(splice, kViewer, &close), "") << "closed at once, nothing flushed";
  ASSERT_TRUE(close);
  EXPECT_EQ(close->code, 1003);
  EXPECT_EQ(splice.first_gone(), kViewer);
  splice.detach(kViewer);
  EXPECT_EQ(drain(splice, kDevice, &close), "");
  EXPECT_EQ(close->reason, "viewer_closed");
}

TEST(TunnelSpliceTest, CloseWithoutFlushDropsTheQueueAndWins) {
  RecordingIo io;
  TunnelSplice splice(io);
  splice.attach(kDevice);
  splice.attach(kViewer);
  splice.received(kDevice, "abc");
  splice.close(kViewer, 1000, "admin", true);
  splice.close(kViewer, 4408, "peer did not arrive", false);
  std::optional<TunnelSplice::Close> close;
  EXPECT_EQ(drain(splice, kViewer, &close), "");
  ASSERT_TRUE(close);
  EXPECT_EQ(close->code, 4408);
  // Data from an end being closed is dropped.
  splice.received(kViewer, "late");
  EXPECT_EQ(splice.queued(kDevice), 0u);

  // Flushing close keeps the queue.
  RecordingIo io2;
  TunnelSplice other(io2);
  other.attach(kDevice);
  other.attach(kViewer);
  other.received(kViewer, "to device");
  other.close(kDevice, 1000, "admin", true);
  EXPECT_EQ(drain(other, kDevice, &close), "to device");
  EXPECT_EQ(close->reason, "admin");
}

}  // namespace
}  // namespace tether::server
