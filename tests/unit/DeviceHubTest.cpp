#include "server/DeviceHub.h"

#include <gtest/gtest.h>

#include "ServerTestSupport.h"
#include "TempDir.h"
#include "server/SqliteStore.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
using tether::server::testing::make_device_key;
using tether::server::testing::open_ca;
using tether::testing::TempDir;

struct FakeTransport : UpTransport {
  void send(ConnectionId c, std::string text) override { sent.emplace_back(c, json::parse(text)); }
  void close(ConnectionId c, int code, const std::string&) override {
    closed.emplace_back(c, code);
  }
  std::vector<std::pair<ConnectionId, json>> sent;
  std::vector<std::pair<ConnectionId, int>> closed;
};

class DeviceHubTest : public ::testing::Test {
 protected:
  DeviceHubTest()
      : ca_(open_ca(dir_.path())),
        store_(std::move(SqliteStore::open(dir_ / "tether.db")).value()),
        hub_(*store_, ca_, transport_, HubSettings{}, [this] { return now_; }) {
    EnrollmentTokenRecord token{"t", "h", 0, 1 << 30, std::nullopt, "", ""};
    EXPECT_TRUE(store_->insert_enrollment_token(token).ok());
    EnrolledDevice d;
    d.id = key_.id;
    d.new_online_key = std::string(64, 'c');
    EXPECT_EQ(store_->redeem_token_and_enroll("t", 1, d).value(), EnrollOutcome::kEnrolled);
  }

  std::string hello(const std::string& id, const std::string& device_id) {
    return json({{"v", 1},
                 {"type", "hello"},
                 {"id", id},
                 {"body",
                  {{"device_id", device_id},
                   {"agent_version", "1.0"},
                   {"os",
                    {{"name", "Debian"}, {"version", "12"}, {"kernel", "6.1"}, {"arch", "x86_64"}}},
                   {"hostname", "tc"}}}})
        .dump();
  }

  TempDir dir_;
  CertificateAuthority ca_;
  std::unique_ptr<SqliteStore> store_;
  FakeTransport transport_;
  std::int64_t now_ = 1000;
  testing::TestDeviceKey key_ = make_device_key();
  DeviceHub hub_;
};

TEST_F(DeviceHubTest, AdmitsOnlyKnownUnrevokedDevices) {
  EXPECT_TRUE(hub_.admit(key_.id).ok());
  EXPECT_FALSE(hub_.admit(std::string(64, 'f')).ok());
  ASSERT_TRUE(store_->revoke_device(key_.id, false).value());
  EXPECT_EQ(hub_.admit(key_.id).error().code, Errc::kPermissionDenied);
}

TEST_F(DeviceHubTest, HelloIsAnsweredThenTrustIsUpdated) {
  hub_.on_connected(7, key_.id, "10.1.1.1");
  EXPECT_FALSE(hub_.live_state(key_.id).has_value());  // online only after hello
  hub_.on_message(7, hello("d1", key_.id));
  ASSERT_EQ(transport_.sent.size(), 2u);
  const json& ack = transport_.sent[0].second;
  EXPECT_EQ(ack["id"], "d1");
  EXPECT_EQ(ack["body"]["ok"], true);
  EXPECT_EQ(ack["body"]["data"]["online_key"], std::string(64, 'c'));
  EXPECT_EQ(ack["body"]["data"]["server_time"], 1000);
  const json& trust = transport_.sent[1].second;
  EXPECT_EQ(trust["type"], "trust_update");
  EXPECT_EQ(trust["body"]["ca_fingerprints"], json({ca_.ca_fingerprint()}));
  ASSERT_TRUE(hub_.live_state(key_.id).has_value());
  EXPECT_EQ(hub_.live_state(key_.id)->address, "10.1.1.1");
  EXPECT_EQ(store_->find_device(key_.id).value()->agent_version, "1.0");

  // The device's result for trust_update is matched once.
  hub_.on_message(
      7,
      json({{"v", 1}, {"type", "result"}, {"id", trust["id"]}, {"body", {{"ok", true}}}}).dump());
  EXPECT_EQ(transport_.sent.size(), 2u);
}

TEST_F(DeviceHubTest, HelloForAnotherDeviceIsRefusedAndClosed) {
  hub_.on_connected(7, key_.id, "10.1.1.1");
  hub_.on_message(7, hello("d1", std::string(64, 'e')));
  ASSERT_EQ(transport_.sent.size(), 1u);
  EXPECT_EQ(transport_.sent[0].second["body"]["error"]["code"], "permission_denied");
  ASSERT_EQ(transport_.closed.size(), 1u);
}

TEST_F(DeviceHubTest, StatusIsKeptInMemoryUntilFlushed) {
  hub_.on_connected(7, key_.id, "10.1.1.1");
  hub_.on_message(7, hello("d1", key_.id));
  now_ = 2000;
  hub_.on_message(7, json({{"v", 1},
                           {"type", "status"},
                           {"id", "d2"},
                           {"body",
                            {{"uptime_s", 9},
                             {"load1", 0.1},
                             {"mem_total_kb", 1},
                             {"mem_available_kb", 1},
                             {"shadow_sessions", 0}}}})
                         .dump());
  EXPECT_EQ(hub_.live_state(key_.id)->last_seen, 2000);
  EXPECT_NE(hub_.live_state(key_.id)->status_json.find("\"uptime_s\":9"), std::string::npos);
  auto stored = store_->find_device(key_.id).value();
  EXPECT_TRUE(stored->status_json.empty());
  EXPECT_EQ(stored->last_seen, 1000);
  ASSERT_TRUE(hub_.flush().ok());
  stored = store_->find_device(key_.id).value();
  EXPECT_NE(stored->status_json.find("\"uptime_s\":9"), std::string::npos);
  EXPECT_EQ(stored->last_seen, 2000);
}

TEST_F(DeviceHubTest, BadMessagesGetErrorResultsByIdAndTheChannelStays) {
  hub_.on_connected(7, key_.id, "10.1.1.1");
  hub_.on_message(7, R"({"v":1,"type":"hello","id":"x9","body":{"device_id":1}})");
  hub_.on_message(7, R"({"v":1,"type":"status","id":"x10","body":)");
  hub_.on_message(7, R"({"v":1,"type":"status","id":"x11","body":{}})");  // before hello
  ASSERT_EQ(transport_.sent.size(), 3u);
  EXPECT_EQ(transport_.sent[0].second["id"], "x9");
  EXPECT_EQ(transport_.sent[0].second["body"]["error"]["code"], "wrong_type");
  EXPECT_EQ(transport_.sent[1].second["id"], "0");
  EXPECT_EQ(transport_.sent[1].second["body"]["error"]["code"], "syntax");
  EXPECT_EQ(transport_.sent[2].second["id"], "x11");
  EXPECT_TRUE(transport_.closed.empty());
}

TEST_F(DeviceHubTest, ASecondConnectionReplacesTheFirst) {
  hub_.on_connected(7, key_.id, "10.1.1.1");
  hub_.on_message(7, hello("d1", key_.id));
  hub_.on_connected(8, key_.id, "10.1.1.2");
  ASSERT_EQ(transport_.closed.size(), 1u);
  EXPECT_EQ(transport_.closed[0], (std::pair<ConnectionId, int>{7, kCloseReplaced}));
  hub_.on_closed(7);  // the old channel's close must not take the device offline
  hub_.on_message(8, hello("d1", key_.id));
  ASSERT_TRUE(hub_.live_state(key_.id).has_value());
  EXPECT_EQ(hub_.live_state(key_.id)->address, "10.1.1.2");
  hub_.on_closed(8);
  EXPECT_FALSE(hub_.live_state(key_.id).has_value());
}

TEST_F(DeviceHubTest, DisconnectClosesWithTheGivenCode) {
  hub_.on_connected(7, key_.id, "10.1.1.1");
  hub_.on_message(7, hello("d1", key_.id));
  hub_.disconnect(key_.id, kCloseRevoked, "revoked");
  ASSERT_EQ(transport_.closed.size(), 1u);
  EXPECT_EQ(transport_.closed[0], (std::pair<ConnectionId, int>{7, kCloseRevoked}));
  EXPECT_FALSE(hub_.live_state(key_.id).has_value());
  const auto sent = transport_.sent.size();
  hub_.on_message(7, hello("d2", key_.id));  // ignored: the channel is on its way out
  EXPECT_EQ(transport_.sent.size(), sent);
}

TEST_F(DeviceHubTest, CertRenewIssuesForTheSameKeyOnly) {
  hub_.on_connected(7, key_.id, "10.1.1.1");
  hub_.on_message(7, hello("d1", key_.id));
  transport_.sent.clear();
  hub_.on_message(
      7, json({{"v", 1}, {"type", "cert_renew"}, {"id", "d2"}, {"body", {{"csr_pem", key_.csr}}}})
             .dump());
  ASSERT_EQ(transport_.sent.size(), 1u);
  const json& reply = transport_.sent[0].second;
  ASSERT_EQ(reply["body"]["ok"], true) << reply.dump();
  auto cert =
      pki::certificate_from_pem(reply["body"]["data"]["certificate_pem"].get<std::string>());
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(store_->find_device(key_.id).value()->cert_serial,
            pki::describe(cert->get()).value().serial);

  auto other = make_device_key();
  hub_.on_message(
      7, json({{"v", 1}, {"type", "cert_renew"}, {"id", "d3"}, {"body", {{"csr_pem", other.csr}}}})
             .dump());
  ASSERT_EQ(transport_.sent.size(), 2u);
  EXPECT_EQ(transport_.sent[1].second["body"]["error"]["code"], "permission_denied");
}

}  // namespace
}  // namespace tether::server
