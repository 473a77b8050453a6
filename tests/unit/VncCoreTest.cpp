// The pure pieces of tether-vnc: geometry (capture clipping, pointer clamping, grab
// planning), the Shift decision for keysyms, clipboard text conversion, the command line.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vnc/Geometry.h"
#include "vnc/KeyPlan.h"
#include "vnc/TextCodec.h"
#include "vnc/VncOptions.h"

namespace tether::vnc {
namespace {

TEST(VncGeometry, IntersectAndBoundingBox) {
  EXPECT_EQ(intersect({0, 0, 100, 100}, {50, 60, 100, 100}), (Rect{50, 60, 50, 40}));
  EXPECT_TRUE(intersect({0, 0, 10, 10}, {10, 0, 10, 10}).empty());  // touching edges
  EXPECT_TRUE(intersect({0, 0, 0, 10}, {0, 0, 10, 10}).empty());
  // Huge values from a viewer do not overflow.
  EXPECT_EQ(intersect({0, 0, 100, 100}, {2147483600, 0, 2147483600, 10}), Rect{});
  EXPECT_EQ(bounding_box({0, 0, 10, 10}, {20, 5, 10, 10}), (Rect{0, 0, 30, 15}));
  EXPECT_EQ(bounding_box({}, {20, 5, 10, 10}), (Rect{20, 5, 10, 10}));
}

TEST(VncGeometry, DamageIsClippedToTheMonitorAndMovedIntoItsCoordinates) {
  const Rect right_monitor{1920, 0, 1280, 1024};
  EXPECT_EQ(to_capture_coords({1900, 100, 100, 50}, right_monitor), (Rect{0, 100, 80, 50}));
  EXPECT_TRUE(to_capture_coords({0, 0, 1920, 1080}, right_monitor).empty());
  EXPECT_EQ(to_capture_coords({3000, 1000, 500, 500}, right_monitor), (Rect{1080, 1000, 200, 24}));
}

TEST(VncGeometry, PointerIsOffsetAndClampedIntoTheCapture) {
  const Rect right_monitor{1920, 0, 1280, 1024};
  EXPECT_EQ(to_root_coords(10, 20, right_monitor), (Point{1930, 20}));
  EXPECT_EQ(to_root_coords(-5, 5000, right_monitor), (Point{1920, 1023}));
  EXPECT_EQ(to_root_coords(65535, 0, right_monitor), (Point{3199, 0}));
  EXPECT_EQ(to_root_coords(5, 5, Rect{}), (Point{0, 0}));
}

TEST(VncGeometry, ManyDamagedRectanglesBecomeOneGrab) {
  const Rect screen{0, 0, 1024, 768};
  std::vector<Rect> few = {{0, 0, 10, 10}, {100, 100, 10, 10}, {5000, 0, 10, 10}};
  EXPECT_EQ(plan_grabs(few, screen, 32), (std::vector<Rect>{{0, 0, 10, 10}, {100, 100, 10, 10}}));
  std::vector<Rect> many;
  many.reserve(40);
  for (int i = 0; i < 40; ++i) many.push_back(Rect{i * 10, i * 5, 4, 4});
  EXPECT_EQ(plan_grabs(many, screen, 32), (std::vector<Rect>{{0, 0, 394, 199}}));
  EXPECT_TRUE(plan_grabs({}, screen, 32).empty());
}

TEST(VncGeometry, MonitorLinesAndLookup) {
  EXPECT_EQ(format_monitor({"HDMI-1", {1920, 0, 1280, 1024}}), "HDMI-1 1280x1024+1920+0");
  EXPECT_EQ(format_monitor({"left", {-1280, -10, 1280, 1024}}), "left 1280x1024-1280-10");
  const std::vector<Monitor> monitors = {{"DP-1", {0, 0, 10, 10}}, {"DP-2", {10, 0, 10, 10}}};
  ASSERT_NE(find_monitor(monitors, "DP-2"), nullptr);
  EXPECT_EQ(find_monitor(monitors, "DP-2")->area.x, 10);
  EXPECT_EQ(find_monitor(monitors, "dp-2"), nullptr);
}

// Keysyms as in <X11/keysymdef.h>.
constexpr std::uint32_t kA = 0x41, ka = 0x61, k1 = 0x31, kExclam = 0x21, kLeft = 0xff51,
                        kAdiaeresis = 0xc4;

TEST(VncKeyPlan, ShiftIsPressedOrLiftedOnlyWhenTheLevelNeedsIt) {
  EXPECT_EQ(plan_shift(ka, ka, kA, false), ShiftAction::kAsIs);
  EXPECT_EQ(plan_shift(kA, ka, kA, false), ShiftAction::kPress);        // noVNC sends 'A' alone
  EXPECT_EQ(plan_shift(kA, ka, kA, true), ShiftAction::kAsIs);          // viewer holds Shift
  EXPECT_EQ(plan_shift(k1, k1, kExclam, true), ShiftAction::kRelease);  // other layout
  EXPECT_EQ(plan_shift(kExclam, k1, kExclam, false), ShiftAction::kPress);
  // Same on both levels: the viewer's Shift is for the application (Shift+Left selects).
  EXPECT_EQ(plan_shift(kLeft, kLeft, kLeft, true), ShiftAction::kAsIs);
  // Not on either level (an AltGr level): left alone.
  EXPECT_EQ(plan_shift(kAdiaeresis, ka, kA, true), ShiftAction::kAsIs);
}

TEST(VncTextCodec, Latin1AndUtf8) {
  EXPECT_EQ(latin1_to_utf8("caf\xe9"), "caf\xc3\xa9");
  EXPECT_EQ(utf8_to_latin1("caf\xc3\xa9"), "caf\xe9");
  EXPECT_EQ(utf8_to_latin1("\xe2\x82\xac 5"), "? 5");    // euro sign
  EXPECT_EQ(utf8_to_latin1("\xf0\x9f\x98\x80!"), "?!");  // emoji
  EXPECT_EQ(utf8_to_latin1("a\xc3"), "a?");              // truncated
  EXPECT_EQ(utf8_to_latin1("\xc1\x81"), "?");            // overlong 'A'
  EXPECT_EQ(utf8_to_latin1("\xff\xfe"), "??");
  EXPECT_EQ(utf8_prefix("ab\xc3\xa9", 3), "ab");
  EXPECT_EQ(utf8_prefix("ab\xc3\xa9", 4), "ab\xc3\xa9");
  EXPECT_EQ(utf8_prefix("abc", 1), "a");
}

Result<VncOptions> parse(std::vector<const char*> args) {
  args.insert(args.begin(), "tether-vnc");
  return parse_vnc_options(static_cast<int>(args.size()), args.data());
}

TEST(VncOptionsTest, TheAgentsCommandLine) {
  auto o = parse({"--fd", "3", "--display", ":0", "--xauthority", "/run/user/1000/gdm/Xauthority",
                  "--xauthority", "/home/u/.Xauthority", "--view-only", "--monitor", "HDMI-1",
                  "--clipboard-max", "4096", "--desktop-name", "kiosk-7", "--jpeg-quality", "9"});
  ASSERT_TRUE(o.ok()) << o.error().what();
  EXPECT_EQ(o->fd, 3);
  EXPECT_EQ(o->display, ":0");
  const std::vector<std::string> files = {"/run/user/1000/gdm/Xauthority", "/home/u/.Xauthority"};
  EXPECT_EQ(o->xauthority, files);  // tried in this order
  EXPECT_TRUE(o->view_only);
  EXPECT_EQ(o->monitor, "HDMI-1");
  EXPECT_TRUE(o->clipboard);
  EXPECT_EQ(o->clipboard_max, 4096u);
  EXPECT_EQ(o->desktop_name, "kiosk-7");
  EXPECT_EQ(o->jpeg_quality, 9);

  auto d = parse({"--fd=4", "--display=:1", "--no-clipboard"});
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->clipboard);
  EXPECT_FALSE(d->view_only);
  EXPECT_EQ(d->clipboard_max, kDefaultClipboardMax);
  EXPECT_EQ(d->jpeg_quality, kDefaultJpegQuality);
  EXPECT_TRUE(d->xauthority.empty());
}

TEST(VncOptionsTest, Errors) {
  for (const auto& args : std::vector<std::vector<const char*>>{
           {},
           {"--fd", "3"},
           {"--display", ":0"},
           {"--display", ":0", "--fd", "-1"},
           {"--display", ":0", "--fd", "1024"},
           {"--display", ":0", "--fd", "3x"},
           {"--display", ":0", "--fd", "3", "--jpeg-quality", "-1"},
           {"--display", ":0", "--fd", "3", "--clipboard-max", "999999999999"},
           {"--display", ":0", "--fd", "3", "--monitor", ""},
           {"--display", ":0", "--list-monitors", "--view-only"},
       }) {
    EXPECT_FALSE(parse(args).ok()) << (args.empty() ? "(none)" : args.back());
  }
  auto list = parse({"--list-monitors", "--json", "--display", ":0"});
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->list_monitors && list->json);
}

}  // namespace
}  // namespace tether::vnc
