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

using FakeTransport = tether::server::testing::RecordingUpTransport;

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

  // Connects the device and completes hello; the transport's log is cleared.
  void bring_online(ConnectionId connection = 7) {
    hub_.on_connected(connection, key_.id, "10.1.1.1");
    hub_.on_message(connection, hello("d1", key_.id));
    ASSERT_TRUE(hub_.live_state(key_.id).has_value());
    transport_.sent.clear();
  }

  static std::string result_message(const json& id, bool ok, json data = json::object()) {
    json body = {{"ok", ok}};
    if (ok) {
      body["data"] = std::move(data);
    } else {
      body["error"] = {{"code", "permission_denied"},
                       {"message", "org.freedesktop.login1.AccessDenied: no"}};
    }
    return json({{"v", 1}, {"type", "result"}, {"id", id}, {"body", body}}).dump();
  }

  static protocol::Command command(protocol::CommandName name) {
    protocol::Command c;
    c.name = name;
    return c;
  }

  // Records every call of a request's `done`.
  struct Outcomes {
    std::vector<Result<protocol::ResultBody>> calls;
    RequestDone callback() {
      return [this](Result<protocol::ResultBody> r) { calls.push_back(std::move(r)); };
    }
  };

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

TEST_F(DeviceHubTest, ARequestToAnOfflineDeviceFailsAtOnce) {
  Outcomes out;
  hub_.request(key_.id, command(protocol::CommandName::kReboot), out.callback());
  ASSERT_EQ(out.calls.size(), 1u);
  EXPECT_EQ(out.calls[0].error().code, Errc::kUnavailable);
  EXPECT_NE(out.calls[0].error().message.find("offline"), std::string::npos);
  // Connected but before hello it is not online either.
  hub_.on_connected(7, key_.id, "10.1.1.1");
  hub_.request(key_.id, command(protocol::CommandName::kReboot), out.callback());
  ASSERT_EQ(out.calls.size(), 2u);
  EXPECT_EQ(out.calls[1].error().code, Errc::kUnavailable);
  EXPECT_TRUE(transport_.sent.empty());
}

TEST_F(DeviceHubTest, TheDevicesResultReachesDoneExactlyOnce) {
  bring_online();
  Outcomes out;
  hub_.request(key_.id, command(protocol::CommandName::kReboot), out.callback());
  EXPECT_TRUE(out.calls.empty());
  ASSERT_EQ(transport_.sent.size(), 1u);
  const json& sent = transport_.sent[0].second;
  EXPECT_EQ(transport_.sent[0].first, 7u);
  EXPECT_EQ(sent["type"], "command");
  EXPECT_EQ(sent["body"]["name"], "reboot");
  hub_.on_message(7, result_message(sent["id"], true, {{"action", "reboot"}}));
  ASSERT_EQ(out.calls.size(), 1u);
  ASSERT_TRUE(out.calls[0].ok());
  EXPECT_TRUE(out.calls[0]->ok);
  EXPECT_EQ(out.calls[0]->data, json({{"action", "reboot"}}));
  // The same result again (or a forged one) matches nothing.
  hub_.on_message(7, result_message(sent["id"], true));
  EXPECT_EQ(out.calls.size(), 1u);

  // The device's own error is a result too, passed on as it came.
  hub_.request(key_.id, command(protocol::CommandName::kPowerOff), out.callback());
  hub_.on_message(7, result_message(transport_.sent.back().second["id"], false));
  ASSERT_EQ(out.calls.size(), 2u);
  ASSERT_TRUE(out.calls[1].ok());
  EXPECT_FALSE(out.calls[1]->ok);
  EXPECT_EQ(out.calls[1]->error->code, "permission_denied");
  EXPECT_EQ(out.calls[1]->error->message, "org.freedesktop.login1.AccessDenied: no");
}

TEST_F(DeviceHubTest, ARequestWithoutAnAnswerTimesOut) {
  bring_online();
  Outcomes out;
  const auto asked = std::chrono::steady_clock::now();
  hub_.request(key_.id, command(protocol::CommandName::kReboot), out.callback());
  const json id = transport_.sent.back().second["id"];
  hub_.expire_requests(asked + std::chrono::seconds(1));
  EXPECT_TRUE(out.calls.empty());
  hub_.expire_requests(asked + HubSettings{}.request_timeout + std::chrono::seconds(1));
  ASSERT_EQ(out.calls.size(), 1u);
  EXPECT_EQ(out.calls[0].error().code, Errc::kTimeout);
  // A late answer is dropped; expiring again does nothing.
  hub_.on_message(7, result_message(id, true));
  hub_.expire_requests(asked + std::chrono::hours(1));
  EXPECT_EQ(out.calls.size(), 1u);
  EXPECT_TRUE(hub_.live_state(key_.id).has_value());  // the channel stays
}

TEST_F(DeviceHubTest, ARequestEndsWhenTheChannelCloses) {
  bring_online();
  Outcomes out;
  hub_.request(key_.id, command(protocol::CommandName::kReboot), out.callback());
  hub_.request(key_.id, command(protocol::CommandName::kGetSettings), out.callback());
  hub_.on_closed(7);
  ASSERT_EQ(out.calls.size(), 2u);
  for (const auto& call : out.calls) EXPECT_EQ(call.error().code, Errc::kUnavailable);
  hub_.expire_requests(std::chrono::steady_clock::now() + std::chrono::hours(1));
  EXPECT_EQ(out.calls.size(), 2u);
}

TEST_F(DeviceHubTest, ARequestEndsWhenANewChannelReplacesItsOwn) {
  bring_online();
  Outcomes out;
  hub_.request(key_.id, command(protocol::CommandName::kReboot), out.callback());
  const json id = transport_.sent.back().second["id"];
  hub_.on_connected(8, key_.id, "10.1.1.2");
  ASSERT_EQ(out.calls.size(), 1u);
  EXPECT_EQ(out.calls[0].error().code, Errc::kUnavailable);
  hub_.on_message(7, result_message(id, true));  // the old channel's late answer
  hub_.on_closed(7);
  EXPECT_EQ(out.calls.size(), 1u);
}

TEST_F(DeviceHubTest, ARequestEndsWhenTheDeviceIsRevoked) {
  bring_online();
  Outcomes out;
  hub_.request(key_.id, command(protocol::CommandName::kReboot), out.callback());
  hub_.disconnect(key_.id, kCloseRevoked, "revoked");
  ASSERT_EQ(out.calls.size(), 1u);
  EXPECT_EQ(out.calls[0].error().code, Errc::kUnavailable);
  hub_.on_closed(7);
  EXPECT_EQ(out.calls.size(), 1u);
}

TEST_F(DeviceHubTest, CloseAllEndsEveryRequest) {
  bring_online();
  Outcomes out;
  hub_.request(key_.id, command(protocol::CommandName::kReboot), out.callback());
  hub_.close_all(kCloseRestarting, "server restarting");
  ASSERT_EQ(out.calls.size(), 1u);
  EXPECT_EQ(out.calls[0].error().code, Errc::kUnavailable);
  ASSERT_EQ(transport_.closed.size(), 1u);
  hub_.on_closed(7);
  EXPECT_EQ(out.calls.size(), 1u);
}

TEST_F(DeviceHubTest, ChannelOpenedWhileStoppingIsClosedAsARestart) {
  hub_.close_all(kCloseRestarting, "server restarting");
  hub_.on_connected(8, key_.id, "10.1.1.2");
  ASSERT_EQ(transport_.closed.size(), 1u);
  EXPECT_EQ(transport_.closed[0], std::make_pair(ConnectionId{8}, kCloseRestarting));
  EXPECT_FALSE(hub_.live_state(key_.id).has_value());
}

TEST_F(DeviceHubTest, DestroyingTheHubEndsEveryRequest) {
  Outcomes out;
  {
    DeviceHub hub(*store_, ca_, transport_, HubSettings{}, [] { return 1000; });
    hub.on_connected(9, key_.id, "10.1.1.1");
    hub.on_message(9, hello("d1", key_.id));
    hub.request(key_.id, command(protocol::CommandName::kReboot), out.callback());
    // A callback that calls back into the hub while it goes away finds it empty.
    hub.request(key_.id, command(protocol::CommandName::kPowerOff),
                [&hub, &out, id = key_.id](Result<protocol::ResultBody> r) {
                  out.calls.push_back(std::move(r));
                  hub.request(id, command(protocol::CommandName::kReboot), out.callback());
                });
    EXPECT_TRUE(out.calls.empty());
  }
  ASSERT_EQ(out.calls.size(), 3u);
  for (const auto& call : out.calls) EXPECT_EQ(call.error().code, Errc::kUnavailable);
}

TEST_F(DeviceHubTest, TooManyWaitingRequestsAreRefusedOneByOne) {
  bring_online();  // trust_update waits too
  Outcomes out;
  for (int i = 0; i < 70; ++i) {
    hub_.request(key_.id, command(protocol::CommandName::kGetSettings), out.callback());
  }
  // 63 more fit beside trust_update; each of the other 7 is refused at once, once.
  ASSERT_EQ(out.calls.size(), 7u);
  for (const auto& call : out.calls) EXPECT_EQ(call.error().code, Errc::kUnavailable);
  EXPECT_EQ(transport_.sent.size(), 63u);
  hub_.on_closed(7);
  EXPECT_EQ(out.calls.size(), 70u);
}

TEST_F(DeviceHubTest, StoredSettingsArePushedAfterHelloAndTheOutcomeRecorded) {
  ASSERT_TRUE(store_->update_settings(key_.id, R"({"shadow.view_only":"true"})").ok());
  hub_.on_connected(7, key_.id, "10.1.1.1");
  hub_.on_message(7, hello("d1", key_.id));
  ASSERT_EQ(transport_.sent.size(), 3u);
  EXPECT_EQ(transport_.sent[0].second["type"], "result");  // HelloAck
  EXPECT_EQ(transport_.sent[1].second["type"], "trust_update");
  const json& push = transport_.sent[2].second;
  EXPECT_EQ(push["type"], "settings");
  EXPECT_EQ(push["body"], json({{"values", {{"shadow.view_only", "true"}}}}));
  hub_.on_message(7, result_message(push["id"], false));
  EXPECT_EQ(store_->find_device(key_.id).value()->settings_error,
            "permission_denied: org.freedesktop.login1.AccessDenied: no");

  // The next hello pushes again; this time the device takes it and the error is cleared.
  hub_.on_closed(7);
  transport_.sent.clear();
  hub_.on_connected(8, key_.id, "10.1.1.1");
  hub_.on_message(8, hello("d1", key_.id));
  ASSERT_EQ(transport_.sent.size(), 3u);
  hub_.on_message(8, result_message(transport_.sent[2].second["id"], true));
  EXPECT_EQ(store_->find_device(key_.id).value()->settings_error, "");
}

TEST_F(DeviceHubTest, NoSettingsArePushedWhenTheServerManagesNone) {
  hub_.on_connected(7, key_.id, "10.1.1.1");
  hub_.on_message(7, hello("d1", key_.id));
  EXPECT_EQ(transport_.sent.size(), 2u);
}

TEST_F(DeviceHubTest, InventoryIsStoredWhenItChanges) {
  bring_online();
  auto inventory = [](const std::string& mac) {
    return json({{"v", 1},
                 {"type", "inventory"},
                 {"id", "d5"},
                 {"body",
                  {{"cpu_count", 2},
                   {"memory_kb", 1024},
                   {"nics", {{{"name", "eth0"}, {"mac", mac}}}}}}})
        .dump();
  };
  hub_.on_message(7, inventory("52:54:00:00:00:01"));
  EXPECT_NE(store_->find_device(key_.id).value()->inventory_json.find("52:54:00:00:00:01"),
            std::string::npos);
  hub_.on_message(7, inventory("52:54:00:00:00:02"));
  EXPECT_NE(store_->find_device(key_.id).value()->inventory_json.find("52:54:00:00:00:02"),
            std::string::npos);
}

}  // namespace
}  // namespace tether::server
