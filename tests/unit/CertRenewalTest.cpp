#include "agent/CertRenewal.h"

#include <gtest/gtest.h>

namespace tether::agent {
namespace {

TEST(CertRenewalTest, DueAtAboutTwoThirdsOfTheLife) {
  const std::time_t nb = 1'000'000;
  const std::time_t na = nb + 90 * 86400;
  const auto mid = renewal_delay(nb, na, nb, 0.5);
  EXPECT_EQ(mid.count(), 60 * 86400);
  // Jitter moves it by at most 5 % of the life either way.
  EXPECT_EQ(renewal_delay(nb, na, nb, 0.0).count(),
            static_cast<long>(90 * 86400 * (2.0 / 3 - 0.05)));
  EXPECT_NEAR(static_cast<double>(renewal_delay(nb, na, nb, 0.9999).count()),
              90 * 86400 * (2.0 / 3 + 0.05), 100.0);
}

TEST(CertRenewalTest, CountsFromNowAndIsNeverNegative) {
  const std::time_t nb = 1'000'000;
  const std::time_t na = nb + 30;
  EXPECT_EQ(renewal_delay(nb, na, nb + 10, 0.5).count(), 10);
  EXPECT_EQ(renewal_delay(nb, na, nb + 25, 0.5).count(), 0);
  EXPECT_EQ(renewal_delay(nb, na, na + 100, 0.5).count(), 0);
}

TEST(CertRenewalTest, RetryDelayIsBounded) {
  EXPECT_EQ(renewal_retry_delay(1000, 1000).count(), 30);
  EXPECT_EQ(renewal_retry_delay(1000 + 1000, 1000).count(), 100);
  EXPECT_EQ(renewal_retry_delay(1000 + 90 * 86400, 1000).count(), 3600);
}

}  // namespace
}  // namespace tether::agent
