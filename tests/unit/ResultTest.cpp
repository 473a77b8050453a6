#include "common/Result.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>

namespace tether {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return make_error(Errc::kBadValue, "not positive");
  return v;
}

Result<int> doubled(int v) {
  TETHER_ASSIGN_OR_RETURN(int x, parse_positive(v));
  return x * 2;
}

Status check(int v) {
  TETHER_TRY(parse_positive(v));
  return {};
}

TEST(ResultTest, HoldsValueOrError) {
  auto ok = parse_positive(3);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 3);
  auto bad = parse_positive(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::kBadValue);
  EXPECT_EQ(bad.error().message, "not positive");
  EXPECT_EQ(bad.value_or(7), 7);
}

TEST(ResultTest, MacrosPropagateErrors) {
  EXPECT_EQ(*doubled(4), 8);
  EXPECT_EQ(doubled(0).error().code, Errc::kBadValue);
  EXPECT_TRUE(check(1).ok());
  EXPECT_FALSE(check(0).ok());
}

TEST(ResultTest, MoveOnlyValues) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(5);
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 5);
}

TEST(ResultTest, ContextKeepsCode) {
  Error e = make_error(Errc::kIo, "disk full").context("writing /x");
  EXPECT_EQ(e.code, Errc::kIo);
  EXPECT_EQ(e.message, "writing /x: disk full");
}

TEST(ResultTest, EveryErrcHasADistinctName) {
  std::set<std::string_view> names;
  for (int i = 0; i <= static_cast<int>(Errc::kInternal); ++i) {
    auto name = errc_name(static_cast<Errc>(i));
    EXPECT_FALSE(name.empty());
    EXPECT_TRUE(names.insert(name).second) << name;
  }
}

}  // namespace
}  // namespace tether
