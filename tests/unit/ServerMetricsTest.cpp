// The server's and gateway's metrics parts without sockets: what the enrollment service and
// the channel counters count, the refusal reasons they read from the sinks' errors, and the
// /metrics endpoint's authentication.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "ServerTestSupport.h"
#include "TempDir.h"
#include "common/FileIo.h"
#include "common/MetricsRegistry.h"
#include "protocol/EnrollmentToken.h"
#include "server/ChannelMetrics.h"
#include "server/EnrollmentService.h"
#include "server/MetricsEndpoint.h"
#include "server/ServerMetrics.h"
#include "server/SqliteStore.h"

namespace tether::server {
namespace {

using tether::server::testing::make_device_key;
using tether::server::testing::open_ca;
using tether::testing::TempDir;

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

TEST(ServerMetricsTest, EnrollmentsAndFailuresAreCountedByReason) {
  TempDir dir;
  CertificateAuthority ca = open_ca(dir.path());
  auto store = std::move(SqliteStore::open(dir / "tether.db")).value();
  EnrollmentSettings settings;
  settings.server_url = "wss://ums.example:8443";
  settings.rate_per_minute = 2;
  EnrollmentService service(*store, ca, settings);
  MetricsRegistry registry;
  service.set_metrics(registry);

  auto token = service.create_token(std::nullopt, "");
  ASSERT_TRUE(token.ok());
  EnrollmentRequest request;
  request.secret = protocol::parse_enrollment_token(token->token).value().secret;
  request.csr_pem = make_device_key().csr;
  request.hostname = "tc-1";
  ASSERT_TRUE(service.enroll(request).ok());
  EXPECT_FALSE(service.enroll(request).ok());  // used
  request.secret = "short";
  EXPECT_FALSE(service.enroll(request).ok());  // unknown
  auto bound = service.create_token(std::nullopt, "52:54:00:00:00:01");
  request.secret = protocol::parse_enrollment_token(bound->token).value().secret;
  EXPECT_FALSE(service.enroll(request).ok());  // MAC binding
  request.csr_pem = "not a CSR";
  request.macs = {"52:54:00:00:00:01"};
  EXPECT_FALSE(service.enroll(request).ok());  // bad CSR
  EXPECT_FALSE(service.admit_attempt("10.0.0.5").has_value());
  EXPECT_FALSE(service.admit_attempt("10.0.0.5").has_value());
  EXPECT_TRUE(service.admit_attempt("10.0.0.5").has_value());

  const std::string text = registry.render();
  EXPECT_TRUE(has_line(text, "tether_enrollments_total{kind=\"new\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "tether_enrollments_total{kind=\"re_enrolled\"} 0")) << text;
  for (const char* reason :
       {"used_token", "unknown_token", "mac_mismatch", "bad_request", "rate_limited"}) {
    EXPECT_TRUE(has_line(
        text, std::string("tether_enrollment_failures_total{reason=\"") + reason + "\"} 1"))
        << reason << "\n"
        << text;
  }
  EXPECT_TRUE(has_line(text, "tether_enrollment_failures_total{reason=\"expired_token\"} 0"));
  EXPECT_TRUE(registry.problems().empty());
}

TEST(ServerMetricsTest, RefusalReasonsFollowTheSinksMessages) {
  // DeviceHub::admit and GatewayRouter::admit_device word their refusals like this.
  EXPECT_EQ(channel_refusal_reason(make_error(Errc::kPermissionDenied, "unknown device abc")),
            "unknown_device");
  EXPECT_EQ(channel_refusal_reason(make_error(Errc::kPermissionDenied, "device was revoked")),
            "revoked");
  EXPECT_EQ(channel_refusal_reason(make_error(Errc::kPermissionDenied, "device was deleted")),
            "deleted");
  EXPECT_EQ(channel_refusal_reason(make_error(Errc::kPermissionDenied,
                                              "device abc is not known to the server or revoked")),
            "not_allowed");
  EXPECT_EQ(channel_refusal_reason(
                make_error(Errc::kUnavailable, "device abc: connection limit reached (10)")),
            "connection_limit");
  EXPECT_EQ(channel_refusal_reason(make_error(Errc::kUnauthenticated, "no client certificate")),
            "bad_certificate");
  EXPECT_EQ(channel_refusal_reason(make_error(
                Errc::kPermissionDenied, "only the server's link certificate may open the link")),
            "not_link_certificate");
  EXPECT_EQ(channel_refusal_reason(make_error(Errc::kIo, "disk I/O error")), "store_error");
  EXPECT_EQ(channel_refusal_reason(make_error(Errc::kConflict, "?")), "other");
}

TEST(ServerMetricsTest, ReconnectsAreSecondAndLaterChannelsOfAPeer) {
  MetricsRegistry registry;
  double open_up = 3;
  ChannelMetrics channels(registry,
                          [&](std::string_view kind) { return kind == "up" ? open_up : 1.0; });
  channels.accepted("up", "device-a");
  channels.accepted("up", "device-b");
  channels.accepted("up", "device-a");
  channels.accepted("up", "device-a");
  channels.accepted("link", "device-a");  // another kind: its own history
  channels.refused("up", "revoked");
  const std::string text = registry.render();
  EXPECT_TRUE(has_line(
      text, "tether_channel_handshakes_total{channel=\"up\",result=\"accepted\",reason=\"\"} 4"))
      << text;
  EXPECT_TRUE(has_line(
      text,
      "tether_channel_handshakes_total{channel=\"up\",result=\"refused\",reason=\"revoked\"} 1"))
      << text;
  EXPECT_TRUE(has_line(text, "tether_channel_reconnects_total{channel=\"up\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "tether_channel_reconnects_total{channel=\"link\"} 0")) << text;
  EXPECT_TRUE(has_line(text, "tether_channels_open{channel=\"up\"} 3")) << text;
  EXPECT_TRUE(has_line(text, "tether_channels_open{channel=\"link\"} 1")) << text;
}

TEST(ServerMetricsTest, ShadowEndReasonsStayBounded) {
  EXPECT_EQ(shadow_end_reason_label("viewer_closed"), "viewer_closed");
  EXPECT_EQ(shadow_end_reason_label("peer_timeout"), "peer_timeout");
  EXPECT_EQ(shadow_end_reason_label("anything a device may say"), "other");
}

TEST(MetricsEndpointTest, OnlyTheMetricsOrAdminTokenGetsTheText) {
  TempDir dir;
  MetricsRegistry registry;
  registry.counter("tether_x_total", "X.").inc(2);
  bool created = false;
  auto endpoint =
      MetricsEndpoint::open(dir.path(), registry, AdminToken::from_value("admin-secret"), created);
  ASSERT_TRUE(endpoint.ok()) << endpoint.error().message;
  EXPECT_TRUE(created);
  struct stat st {};
  ASSERT_EQ(::stat((dir / "metrics.token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
  // The same token on the next start.
  bool again = true;
  auto reopened = MetricsEndpoint::open(dir.path(), registry, std::nullopt, again);
  ASSERT_TRUE(reopened.ok());
  EXPECT_FALSE(again);

  HttpRequest request;
  request.method = "GET";
  request.path = "/metrics";
  EXPECT_TRUE(MetricsEndpoint::owns(request));
  EXPECT_EQ((*endpoint)->serve(request).status, 401);
  request.authorization = "Bearer wrong";
  EXPECT_EQ((*endpoint)->serve(request).status, 401);
  request.authorization = "Basic admin-secret";
  EXPECT_EQ((*endpoint)->serve(request).status, 401);
  request.authorization = "Bearer admin-secret";
  EXPECT_EQ((*endpoint)->serve(request).status, 200);
  EXPECT_EQ((*reopened)->serve(request).status, 401);  // no admin token given to this one

  const std::string token = read_file(dir / "metrics.token").value();
  request.authorization = "Bearer " + token.substr(0, token.find('\n'));
  HttpResponse ok = (*reopened)->serve(request);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(ok.body.find("tether_x_total 2\n"), std::string::npos) << ok.body;
  request.method = "POST";
  EXPECT_EQ((*reopened)->serve(request).status, 405);
}

}  // namespace
}  // namespace tether::server
