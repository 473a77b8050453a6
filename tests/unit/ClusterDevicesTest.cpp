// ClusterDevices' routing between two instances, over an in-memory ClusterBus (the PostgreSQL
// one is exercised by test_scale_out.py with real server processes).
#include "server/ClusterDevices.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <set>

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

// The shared database of the fake cluster.
struct FakeDatabase {
  std::map<std::string, ClusterPresence> presence;  // device → holder
  std::map<std::string, std::string> instances;     // id → public_url (live ones)
  std::map<std::string, std::deque<std::string>> mailboxes;
  bool refuse_writes = false;
};

class FakeBus final : public ClusterBus {
 public:
  FakeBus(FakeDatabase& db, std::string id, std::string url) : db_(db), id_(std::move(id)) {
    db_.instances[id_] = std::move(url);
  }
  const std::string& instance_id() const noexcept override { return id_; }
  void set_present(const std::string& device, const std::string& via) override {
    db_.presence[device] = ClusterPresence{id_, db_.instances[id_], via};
  }
  void clear_present(const std::string& device) override {
    auto it = db_.presence.find(device);
    if (it != db_.presence.end() && it->second.instance_id == id_) db_.presence.erase(it);
  }
  Result<std::optional<ClusterPresence>> locate(const std::string& device) override {
    auto it = db_.presence.find(device);
    if (it == db_.presence.end() || db_.instances.count(it->second.instance_id) == 0) {
      return std::optional<ClusterPresence>{};
    }
    return std::optional<ClusterPresence>{it->second};
  }
  Result<std::unordered_map<std::string, ClusterPresence>> remote_presence() override {
    std::unordered_map<std::string, ClusterPresence> out;
    for (const auto& [device, where] : db_.presence) {
      if (where.instance_id != id_ && db_.instances.count(where.instance_id) != 0) {
        out.emplace(device, where);
      }
    }
    return out;
  }
  Result<std::vector<ClusterInstance>> live_instances() override {
    std::vector<ClusterInstance> out;
    for (const auto& [id, url] : db_.instances) out.push_back({id, url});
    return out;
  }
  Status send(const std::string& to, const std::string& message) override {
    if (db_.refuse_writes) return make_error(Errc::kUnavailable, "database down");
    db_.mailboxes[to].push_back(message);
    return ok_status();
  }
  void set_receiver(Receiver receiver) override { receiver_ = std::move(receiver); }
  // Delivers this instance's mail; returns how many messages.
  int pump() {
    int n = 0;
    auto& box = db_.mailboxes[id_];
    while (!box.empty()) {
      std::string m = std::move(box.front());
      box.pop_front();
      ++n;
      if (receiver_) receiver_(m);
    }
    return n;
  }

 private:
  FakeDatabase& db_;
  std::string id_;
  Receiver receiver_;
};

// One server instance: its hub, bus and ClusterDevices, on the shared store.
struct Instance {
  Instance(FakeDatabase& db, const std::string& id, Store& store, const CertificateAuthority& ca)
      : bus(db, id, "wss://" + id + ".example:8443"),
        hub(store, ca, transport, HubSettings{}, [] { return std::int64_t{1000}; }),
        cluster(hub, bus, ClusterDevicesSettings{}) {
    hub.set_presence_handler(
        [this](const std::string& device, const std::optional<std::string>& via) {
          cluster.on_presence(device, via);
        });
    bus.set_receiver([this](const std::string& m) { cluster.on_message(m); });
  }
  FakeTransport transport;
  FakeBus bus;
  DeviceHub hub;
  ClusterDevices cluster;
};

class ClusterDevicesTest : public ::testing::Test {
 protected:
  ClusterDevicesTest()
      : ca_(open_ca(dir_.path())),
        store_(std::move(SqliteStore::open(dir_ / "tether.db")).value()),
        a_(db_, "aaaa", *store_, ca_),
        b_(db_, "bbbb", *store_, ca_) {
    EnrollmentTokenRecord token{"t", "h", 0, 1 << 30, std::nullopt, "", ""};
    EXPECT_TRUE(store_->insert_enrollment_token(token).ok());
    EnrolledDevice d;
    d.id = key_.id;
    d.new_online_key = std::string(64, 'c');
    EXPECT_EQ(store_->redeem_token_and_enroll("t", 1, d).value(), EnrollOutcome::kEnrolled);
  }

  static std::string hello(const std::string& device_id) {
    return json({{"v", 1},
                 {"type", "hello"},
                 {"id", "h1"},
                 {"body",
                  {{"device_id", device_id},
                   {"agent_version", "1.0"},
                   {"os",
                    {{"name", "Debian"}, {"version", "12"}, {"kernel", "6.1"}, {"arch", "x86_64"}}},
                   {"hostname", "tc"}}}})
        .dump();
  }

  void bring_online(Instance& on, ConnectionId connection) {
    on.hub.on_connected(connection, key_.id, "10.1.1.1");
    on.hub.on_message(connection, hello(key_.id));
    ASSERT_TRUE(on.hub.live_state(key_.id).has_value());
    on.transport.sent.clear();
  }

  static protocol::Command reboot() {
    protocol::Command c;
    c.name = protocol::CommandName::kReboot;
    return c;
  }

  TempDir dir_;
  CertificateAuthority ca_;
  std::unique_ptr<SqliteStore> store_;
  FakeDatabase db_;
  Instance a_;
  Instance b_;
  testing::TestDeviceKey key_ = make_device_key();
};

TEST_F(ClusterDevicesTest, PresenceFollowsTheChannel) {
  EXPECT_FALSE(b_.cluster.live_state(key_.id).has_value());
  bring_online(a_, 7);
  const auto seen_from_b = b_.cluster.live_state(key_.id);
  ASSERT_TRUE(seen_from_b.has_value());
  EXPECT_EQ(seen_from_b->instance, "aaaa");
  EXPECT_EQ(seen_from_b->connected_via, "direct");
  const auto local = a_.cluster.live_state(key_.id);
  ASSERT_TRUE(local.has_value());
  EXPECT_EQ(local->instance, "aaaa");
  EXPECT_EQ(local->address, "10.1.1.1");
  // A listing asks once for the whole table.
  const auto listed = b_.cluster.live_states({key_.id, std::string(64, 'e')});
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed.at(key_.id).instance, "aaaa");

  a_.hub.on_closed(7);
  EXPECT_FALSE(b_.cluster.live_state(key_.id).has_value());
  EXPECT_TRUE(db_.presence.empty());
}

TEST_F(ClusterDevicesTest, DeviceMovingOnKeepsTheNewHoldersPresence) {
  bring_online(a_, 7);
  bring_online(b_, 9);  // reconnected to b before a noticed the old channel is dead
  EXPECT_EQ(db_.presence.at(key_.id).instance_id, "bbbb");
  a_.hub.on_closed(7);  // a's late close must not take b's row
  ASSERT_TRUE(a_.cluster.live_state(key_.id).has_value());
  EXPECT_EQ(a_.cluster.live_state(key_.id)->instance, "bbbb");
}

TEST_F(ClusterDevicesTest, InstanceThatDiedHoldsNothing) {
  bring_online(a_, 7);
  db_.instances.erase("aaaa");  // its heartbeat went stale
  EXPECT_FALSE(b_.cluster.live_state(key_.id).has_value());
  EXPECT_TRUE(b_.cluster.live_states({key_.id}).empty());
}

TEST_F(ClusterDevicesTest, RequestReachesTheHoldingInstanceAndTheResultComesBack) {
  bring_online(a_, 7);
  std::vector<Result<protocol::ResultBody>> outcomes;
  b_.cluster.request(key_.id, reboot(),
                     [&](Result<protocol::ResultBody> r) { outcomes.push_back(std::move(r)); });
  EXPECT_TRUE(outcomes.empty());
  EXPECT_TRUE(a_.transport.sent.empty());
  ASSERT_EQ(a_.bus.pump(), 1);
  ASSERT_EQ(a_.transport.sent.size(), 1u);
  const json& command = a_.transport.sent[0].second;
  EXPECT_EQ(command["type"], "command");
  EXPECT_EQ(command["body"]["name"], "reboot");
  // The device answers on its channel at a.
  a_.hub.on_message(7, json({{"v", 1},
                             {"type", "result"},
                             {"id", command["id"]},
                             {"body", {{"ok", true}, {"data", {{"rebooting", true}}}}}})
                           .dump());
  EXPECT_TRUE(outcomes.empty());
  ASSERT_EQ(b_.bus.pump(), 1);
  ASSERT_EQ(outcomes.size(), 1u);
  ASSERT_TRUE(outcomes[0].ok());
  EXPECT_TRUE(outcomes[0]->ok);
  EXPECT_EQ(outcomes[0]->data, json({{"rebooting", true}}));
  EXPECT_EQ(b_.cluster.counters().forwarded, 1u);
  EXPECT_EQ(a_.cluster.counters().served_for_peers, 1u);
  EXPECT_EQ(b_.cluster.pending_count(), 0u);
}

TEST_F(ClusterDevicesTest, DevicesErrorAndHubErrorsTravelBack) {
  bring_online(a_, 7);
  std::vector<Result<protocol::ResultBody>> outcomes;
  auto record = [&](Result<protocol::ResultBody> r) { outcomes.push_back(std::move(r)); };
  b_.cluster.request(key_.id, reboot(), record);
  ASSERT_EQ(a_.bus.pump(), 1);
  const json id = a_.transport.sent.back().second["id"];
  a_.hub.on_message(
      7, json({{"v", 1},
               {"type", "result"},
               {"id", id},
               {"body",
                {{"ok", false}, {"error", {{"code", "permission_denied"}, {"message", "no"}}}}}})
             .dump());
  ASSERT_EQ(b_.bus.pump(), 1);
  ASSERT_EQ(outcomes.size(), 1u);
  ASSERT_TRUE(outcomes[0].ok());
  EXPECT_FALSE(outcomes[0]->ok);
  EXPECT_EQ(outcomes[0]->error->code, "permission_denied");

  // The channel closes before the device answers: the hub's kUnavailable reaches b.
  b_.cluster.request(key_.id, reboot(), record);
  ASSERT_EQ(a_.bus.pump(), 1);
  a_.hub.on_closed(7);
  ASSERT_EQ(b_.bus.pump(), 1);
  ASSERT_EQ(outcomes.size(), 2u);
  ASSERT_FALSE(outcomes[1].ok());
  EXPECT_EQ(outcomes[1].error().code, Errc::kUnavailable);
}

TEST_F(ClusterDevicesTest, UnansweredRequestTimesOut) {
  bring_online(a_, 7);
  std::vector<Result<protocol::ResultBody>> outcomes;
  b_.cluster.request(key_.id, reboot(),
                     [&](Result<protocol::ResultBody> r) { outcomes.push_back(std::move(r)); });
  b_.cluster.tick(std::chrono::steady_clock::now() + std::chrono::seconds(10));
  EXPECT_TRUE(outcomes.empty());  // within timeout + margin
  b_.cluster.tick(std::chrono::steady_clock::now() + std::chrono::seconds(36));
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].error().code, Errc::kTimeout);
  EXPECT_NE(outcomes[0].error().message.find("aaaa"), std::string::npos);
  // A late answer finds nothing waiting.
  ASSERT_EQ(a_.bus.pump(), 1);
  EXPECT_EQ(b_.bus.pump(), 0);
}

TEST_F(ClusterDevicesTest, OfflineDeviceAndDatabaseDownAnswerAtOnce) {
  std::vector<Result<protocol::ResultBody>> outcomes;
  auto record = [&](Result<protocol::ResultBody> r) { outcomes.push_back(std::move(r)); };
  b_.cluster.request(key_.id, reboot(), record);
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].error().code, Errc::kUnavailable);

  bring_online(a_, 7);
  db_.refuse_writes = true;
  b_.cluster.request(key_.id, reboot(), record);
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_EQ(outcomes[1].error().code, Errc::kUnavailable);
  EXPECT_NE(outcomes[1].error().message.find("database down"), std::string::npos);
  EXPECT_EQ(b_.cluster.pending_count(), 0u);
}

TEST_F(ClusterDevicesTest, DisconnectClosesTheChannelOnTheHoldingInstance) {
  bring_online(a_, 7);
  b_.cluster.disconnect(key_.id, kCloseRevoked, "revoked");
  EXPECT_TRUE(a_.transport.closed.empty());
  ASSERT_EQ(a_.bus.pump(), 1);
  ASSERT_EQ(a_.transport.closed.size(), 1u);
  EXPECT_EQ(a_.transport.closed[0], std::make_pair(ConnectionId{7}, kCloseRevoked));
  EXPECT_FALSE(b_.cluster.live_state(key_.id).has_value());
}

TEST_F(ClusterDevicesTest, ShadowStartIsMadeOnTheHoldingInstance) {
  std::vector<ShadowService::StartRequest> started_at_a;
  a_.cluster.set_shadow_starter([&](const ShadowService::StartRequest& r, HttpRespond respond) {
    started_at_a.push_back(r);
    // The holder's nested start must not be passed on again.
    HttpRespond again = [](HttpResponse) {};
    EXPECT_FALSE(a_.cluster.forward_shadow_start(r, again));
    respond(json_response(201, {{"viewer_url", "wss://aaaa.example:8443/tunnel/s"}}));
  });
  ShadowService::StartRequest request;
  request.device_id = key_.id;
  request.admin = "alice";
  request.view_only = true;
  request.viewer = protocol::ViewerKind::kExternal;
  request.host = "bbbb.example:8443";
  std::vector<HttpResponse> answers;
  HttpRespond respond = [&](HttpResponse r) { answers.push_back(std::move(r)); };
  // Offline everywhere: b starts (and refuses) it itself.
  EXPECT_FALSE(b_.cluster.forward_shadow_start(request, respond));

  bring_online(a_, 7);
  // Local at a: not forwarded.
  EXPECT_FALSE(a_.cluster.forward_shadow_start(request, respond));
  ASSERT_TRUE(b_.cluster.forward_shadow_start(request, respond));
  ASSERT_EQ(a_.bus.pump(), 1);
  ASSERT_EQ(started_at_a.size(), 1u);
  EXPECT_EQ(started_at_a[0].admin, "alice");
  EXPECT_TRUE(started_at_a[0].view_only);
  EXPECT_EQ(started_at_a[0].viewer, protocol::ViewerKind::kExternal);
  EXPECT_EQ(started_at_a[0].host, "");  // the viewer URL names a's own public_url
  ASSERT_EQ(b_.bus.pump(), 1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 201);
  EXPECT_EQ(json::parse(answers[0].body)["viewer_url"], "wss://aaaa.example:8443/tunnel/s");
}

TEST_F(ClusterDevicesTest, UnansweredShadowStartGets504) {
  bring_online(a_, 7);
  ShadowService::StartRequest request;
  request.device_id = key_.id;
  std::vector<HttpResponse> answers;
  HttpRespond respond = [&](HttpResponse r) { answers.push_back(std::move(r)); };
  ASSERT_TRUE(b_.cluster.forward_shadow_start(request, respond));
  b_.cluster.tick(std::chrono::steady_clock::now() + std::chrono::seconds(36));
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 504);
}

TEST_F(ClusterDevicesTest, PeerOriginsAreTheOtherLiveInstances) {
  b_.cluster.tick(std::chrono::steady_clock::now());
  EXPECT_TRUE(b_.cluster.peer_origin("https://AAAA.example:8443"));
  EXPECT_FALSE(b_.cluster.peer_origin("https://bbbb.example:8443"));  // its own: not a peer
  EXPECT_FALSE(b_.cluster.peer_origin("https://evil.example:8443"));
  EXPECT_FALSE(b_.cluster.peer_origin("http://aaaa.example:8443"));
  EXPECT_EQ(web_origin_of("wss://Host.Example:443"), "https://host.example");
  EXPECT_EQ(web_origin_of("wss://h:8443/path"), "https://h:8443");
  EXPECT_EQ(web_origin_of("https://h:8443"), "");
}

TEST_F(ClusterDevicesTest, MalformedMessagesAreCountedNotThrown) {
  const std::string bad[] = {"",
                             "not json",
                             "[]",
                             R"({"v":1,"t":"request"})",
                             R"({"v":1,"t":"result","rid":"x"})",
                             R"({"v":1,"t":"disconnect","device":1})",
                             R"({"v":2,"t":"disconnect","device":"d","code":1000,"reason":""})"};
  for (const auto& m : bad) EXPECT_NO_THROW(a_.cluster.on_message(m));
  EXPECT_EQ(a_.cluster.counters().forward_failures, 7u);
  // A request whose envelope does not parse is answered with the error, not dropped.
  EXPECT_NO_THROW(a_.cluster.on_message(
      R"({"v":1,"t":"request","rid":1,"from":"bbbb","device":"d","envelope":"{"})"));
  ASSERT_EQ(db_.mailboxes["bbbb"].size(), 1u);
  const json answer = json::parse(db_.mailboxes["bbbb"].front());
  EXPECT_EQ(answer["v"], 1);
  EXPECT_EQ(answer["t"], "result");
  EXPECT_EQ(answer["error"]["code"], "syntax");
}

TEST_F(ClusterDevicesTest, GatherAsksEveryOtherInstance) {
  a_.cluster.set_local_answer([](const std::string& what, const json& args) -> json {
    if (what == "session_end") return args.value("session", "") == "s1";
    return json::array({{{"session", "s1"}}});
  });
  std::vector<std::vector<json>> got;
  std::vector<bool> complete;
  auto record = [&](ClusterDevices::Gathered g) {
    got.push_back(std::move(g.answers));
    complete.push_back(g.complete);
  };
  b_.cluster.gather("sessions", json::object(), record);
  EXPECT_TRUE(got.empty());
  ASSERT_EQ(a_.bus.pump(), 1);
  ASSERT_EQ(b_.bus.pump(), 1);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(got[0].size(), 1u);
  EXPECT_EQ(got[0][0][0]["session"], "s1");

  b_.cluster.gather("session_end", {{"session", "s1"}}, record);
  ASSERT_EQ(a_.bus.pump(), 1);
  ASSERT_EQ(b_.bus.pump(), 1);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1], std::vector<json>{true});

  // A third instance that never answers: the gather ends after its timeout with what came.
  FakeBus silent(db_, "cccc", "wss://cccc.example:8443");
  b_.cluster.gather("sessions", json::object(), record);
  ASSERT_EQ(a_.bus.pump(), 1);
  ASSERT_EQ(b_.bus.pump(), 1);
  EXPECT_EQ(got.size(), 2u);  // still waiting for cccc
  b_.cluster.tick(std::chrono::steady_clock::now() + std::chrono::seconds(4));
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[2].size(), 1u);
  EXPECT_EQ(complete, (std::vector<bool>{true, true, false}));

  // Alone: answered at once with nothing.
  db_.instances.erase("aaaa");
  db_.instances.erase("cccc");
  b_.cluster.gather("sessions", json::object(), record);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_TRUE(got[3].empty());
  EXPECT_TRUE(complete[3]);
}

TEST_F(ClusterDevicesTest, RepublishAnnouncesEveryGreetedDevice) {
  bring_online(a_, 7);
  db_.presence.clear();  // as if others had taken a for dead
  a_.cluster.republish();
  ASSERT_EQ(db_.presence.count(key_.id), 1u);
  EXPECT_EQ(db_.presence.at(key_.id).instance_id, "aaaa");
}

}  // namespace
}  // namespace tether::server
