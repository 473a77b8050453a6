#include "server/PgClusterBus.h"

#include <libpq-fe.h>

#include <algorithm>
#include <utility>

#include "server/EnrollmentService.h"

namespace tether::server {
namespace {

using namespace std::chrono_literals;

// pg_advisory_xact_lock key for creating the cluster tables ("tether-c" in ASCII).
constexpr const char* kSchemaLockSql = "SELECT pg_advisory_xact_lock(8387236572939510115)";
// Session advisory lock of the instance that links to the gateways ("tether-g").
constexpr const char* kGatewayLockSql = "SELECT pg_try_advisory_lock(8387236572939510119)";
constexpr const char* kNowSql = "extract(epoch from now())::bigint";

lws_protocols* cluster_protocols() {
  static lws_protocols table[] = {
      lws_fd_watcher_protocol(),
      {nullptr, nullptr, 0, 0, 0, nullptr, 0},
  };
  return table;
}

std::string trimmed(const char* message) {
  std::string s = message != nullptr ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// A text[] literal; device ids and connected_via values are quoted whatever they hold.
std::string array_literal(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::string alive_clause(const std::string& column, std::chrono::seconds dead_after) {
  return column + " >= " + kNowSql + " - " + std::to_string(dead_after.count());
}

}  // namespace

Result<std::unique_ptr<PgClusterBus>> PgClusterBus::open(PgClusterSettings settings) {
  std::unique_ptr<PgClusterBus> bus(new PgClusterBus(std::move(settings)));
  TETHER_ASSIGN_OR_RETURN(std::string id, random_hex(8));
  bus->id_ = std::move(id);
  bus->channel_ = "tether_" + bus->id_;
  TETHER_TRY(bus->connect());
  return bus;
}

PgClusterBus::~PgClusterBus() {
  stop();
}

Status PgClusterBus::connect() {
  const char* keys[] = {"dbname", "connect_timeout", "application_name", nullptr};
  const char* values[] = {settings_.url.c_str(), "3", "tether-server cluster", nullptr};
  conn_.reset(PQconnectdbParams(keys, values, 1));
  if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
    const std::string why = conn_ ? trimmed(PQerrorMessage(conn_.get())) : "out of memory";
    conn_.reset();
    return make_error(Errc::kUnavailable, "cannot connect to the cluster database: " + why);
  }
  // CREATE ... IF NOT EXISTS says "already exists, skipping" as a notice: not for stderr.
  PQsetNoticeProcessor(
      conn_.get(), [](void*, const char*) {}, nullptr);
  connected_ = true;
  // Static statements only: the ids in them are ours (hex), never a network string.
  const std::string schema =
      std::string("BEGIN; ") + kSchemaLockSql +
      "; CREATE TABLE IF NOT EXISTS cluster_instances (id text PRIMARY KEY, public_url text NOT "
      "NULL, started_at bigint NOT NULL, heartbeat_at bigint NOT NULL);"
      " CREATE TABLE IF NOT EXISTS cluster_presence (device_id text PRIMARY KEY, instance_id "
      "text NOT NULL, connected_via text NOT NULL, since bigint NOT NULL);"
      " CREATE INDEX IF NOT EXISTS cluster_presence_by_instance ON cluster_presence "
      "(instance_id);"
      " CREATE TABLE IF NOT EXISTS cluster_messages (id bigserial PRIMARY KEY, to_instance text "
      "NOT NULL, body text NOT NULL, created_at bigint NOT NULL);"
      " CREATE INDEX IF NOT EXISTS cluster_messages_by_instance ON cluster_messages "
      "(to_instance, id); COMMIT;";
  ResultPtr created(PQexec(conn_.get(), schema.c_str()));
  if (!created || PQresultStatus(created.get()) != PGRES_COMMAND_OK) {
    const std::string why = trimmed(PQerrorMessage(conn_.get()));
    conn_.reset();
    connected_ = false;
    return make_error(Errc::kUnavailable, "cannot create the cluster tables: " + why);
  }
  ResultPtr listening(PQexec(conn_.get(), ("LISTEN " + channel_).c_str()));
  if (!listening || PQresultStatus(listening.get()) != PGRES_COMMAND_OK) {
    const std::string why = trimmed(PQerrorMessage(conn_.get()));
    conn_.reset();
    connected_ = false;
    return make_error(Errc::kUnavailable, "cannot listen for cluster messages: " + why);
  }
  TETHER_TRY(heartbeat());
  return Status{};
}

Result<PgClusterBus::ResultPtr> PgClusterBus::exec(const char* sql,
                                                   const std::vector<std::string>& params) {
  if (stopped_) return make_error(Errc::kUnavailable, "the instance is stopping");
  if (!connected_) return make_error(Errc::kUnavailable, "the cluster database is not connected");
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.c_str());
  ResultPtr result(PQexecParams(conn_.get(), sql, static_cast<int>(values.size()), nullptr,
                                values.data(), nullptr, nullptr, 0));
  note_notifications();
  const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    const std::string why = trimmed(PQerrorMessage(conn_.get()));
    if (PQstatus(conn_.get()) != CONNECTION_OK) broken(why);
    return make_error(Errc::kUnavailable, "cluster database: " + why);
  }
  return result;
}

Status PgClusterBus::heartbeat() {
  // An upsert: when others took this instance for dead (it stalled) and removed its row and
  // its presence, the row comes back and the presence is announced again.
  const std::string sql = std::string(
                              "INSERT INTO cluster_instances (id, public_url, started_at, "
                              "heartbeat_at) VALUES ($1, $2, ") +
                          kNowSql + ", " + kNowSql +
                          ") ON CONFLICT (id) DO UPDATE SET heartbeat_at = " + kNowSql +
                          " RETURNING (xmax = 0) AS inserted";
  TETHER_ASSIGN_OR_RETURN(auto result, exec(sql.c_str(), {id_, settings_.public_url}));
  const bool inserted = PQntuples(result.get()) == 1 && PQgetvalue(result.get(), 0, 0)[0] == 't';
  next_heartbeat_ = std::chrono::steady_clock::now() + settings_.heartbeat_interval;
  if (inserted && rejoin_) rejoin_();
  return Status{};
}

Status PgClusterBus::start(lws_context* context) {
  context_ = context;
  lws_context_creation_info info{};
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.vhost_name = "cluster";
  info.protocols = cluster_protocols();
  vhost_ = lws_create_vhost(context, &info);
  if (vhost_ == nullptr) return make_error(Errc::kInternal, "cannot create the cluster vhost");
  soon_ = std::make_unique<LwsTimer>(context, [this] {
    if (!connected_) watcher_.reset();
    if (auto flushed = flush_presence(); !flushed.ok()) report(flushed.error().message);
    if (fetch_due_) fetch_messages();
  });
  TETHER_TRY(watch());
  // Messages sent to this instance before it listened (none for a new id, but a backstop).
  fetch_due_ = true;
  soon_->schedule(0us);
  return Status{};
}

Status PgClusterBus::watch() {
  watcher_.reset();
  if (vhost_ == nullptr || !connected_) return Status{};
  TETHER_ASSIGN_OR_RETURN(
      watcher_, LwsFdWatcher::watch(vhost_, PQsocket(conn_.get()), [this] { on_readable(); }));
  return Status{};
}

void PgClusterBus::on_readable() {
  if (!connected_ || stopped_) return;
  if (PQconsumeInput(conn_.get()) == 0 || PQstatus(conn_.get()) != CONNECTION_OK) {
    broken(trimmed(PQerrorMessage(conn_.get())));
    return;
  }
  note_notifications();
  if (fetch_due_) fetch_messages();
}

void PgClusterBus::note_notifications() {
  if (!conn_) return;
  while (PGnotify* n = PQnotifies(conn_.get())) {
    PQfreemem(n);
    fetch_due_ = true;
  }
  // Delivered from the loop, not from inside the statement that happened to read them.
  if (fetch_due_ && soon_ && !soon_->pending()) soon_->schedule(0us);
}

void PgClusterBus::fetch_messages() {
  fetch_due_ = false;
  if (!connected_ || stopped_) return;
  auto result =
      exec("DELETE FROM cluster_messages WHERE to_instance = $1 RETURNING id, body", {id_});
  if (!result.ok()) {
    report("cannot read this instance's cluster messages: " + result.error().message);
    return;
  }
  std::vector<std::pair<long long, std::string>> messages;
  const int rows = PQntuples(result->get());
  messages.reserve(static_cast<std::size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    messages.emplace_back(std::atoll(PQgetvalue(result->get(), r, 0)),
                          PQgetvalue(result->get(), r, 1));
  }
  std::sort(messages.begin(), messages.end());
  for (auto& [id, body] : messages) {
    if (receiver_) receiver_(body);
  }
}

void PgClusterBus::tick() {
  if (stopped_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!connected_) {
    if (now < next_reconnect_) return;
    next_reconnect_ = now + 5s;
    if (auto again = connect(); !again.ok()) {
      report(again.error().message);
      return;
    }
    report("reconnected to the cluster database");
    if (auto watched = watch(); !watched.ok()) report(watched.error().message);
    // Others may have taken this instance for dead meanwhile: announce every device again.
    if (rejoin_) rejoin_();
    fetch_due_ = true;
  }
  if (now >= next_heartbeat_) {
    if (auto beat = heartbeat(); !beat.ok()) {
      report("cluster heartbeat failed: " + beat.error().message);
      return;
    }
    purge_dead();
    fetch_due_ = true;  // the backstop poll, once per heartbeat
  }
  if (auto flushed = flush_presence(); !flushed.ok()) report(flushed.error().message);
  if (fetch_due_) fetch_messages();
}

void PgClusterBus::purge_dead() {
  // Rows of instances dead for three times dead_after: their devices counted as offline
  // since dead_after already (locate joins on live instances); this only tidies up.
  const std::string sql = "DELETE FROM cluster_instances WHERE heartbeat_at < " +
                          std::string(kNowSql) + " - " +
                          std::to_string(3 * settings_.dead_after.count()) + " RETURNING id";
  auto dead = exec(sql.c_str(), {});
  if (!dead.ok() || PQntuples(dead->get()) == 0) return;
  std::vector<std::string> ids;
  for (int r = 0; r < PQntuples(dead->get()); ++r) ids.emplace_back(PQgetvalue(dead->get(), r, 0));
  const std::string list = array_literal(ids);
  (void)exec("DELETE FROM cluster_presence WHERE instance_id = ANY($1::text[])", {list});
  (void)exec("DELETE FROM cluster_messages WHERE to_instance = ANY($1::text[])", {list});
}

void PgClusterBus::stop() {
  if (stopped_) return;
  unwritten_.clear();
  if (connected_) {
    (void)exec("DELETE FROM cluster_presence WHERE instance_id = $1", {id_});
    (void)exec("DELETE FROM cluster_messages WHERE to_instance = $1", {id_});
    (void)exec("DELETE FROM cluster_instances WHERE id = $1", {id_});
  }
  stopped_ = true;
  watcher_.reset();
  soon_.reset();
}

bool PgClusterBus::lead_gateways() {
  if (!connected_ || stopped_) {
    leading_gateways_ = false;
    return false;
  }
  if (leading_gateways_) return true;
  auto taken = exec(kGatewayLockSql, {});
  leading_gateways_ =
      taken.ok() && PQntuples(taken->get()) == 1 && PQgetvalue(taken->get(), 0, 0)[0] == 't';
  return leading_gateways_;
}

void PgClusterBus::broken(const std::string& why) {
  if (!connected_) return;
  connected_ = false;
  leading_gateways_ = false;  // the lock went with the connection
  report("lost the cluster database: " + why);
  // The watcher is dropped from the loop (this may run inside its callback).
  if (soon_ && !soon_->pending()) soon_->schedule(0us);
  next_reconnect_ = std::chrono::steady_clock::now();
}

void PgClusterBus::report(const std::string& problem) const {
  if (problem_) problem_(problem);
}

void PgClusterBus::set_present(const std::string& device_id, const std::string& connected_via) {
  if (stopped_) return;
  unwritten_[device_id] = connected_via;
  if (soon_ && !soon_->pending()) soon_->schedule(100ms);
}

void PgClusterBus::clear_present(const std::string& device_id) {
  if (stopped_) return;
  unwritten_[device_id] = std::nullopt;
  if (soon_ && !soon_->pending()) soon_->schedule(100ms);
}

Status PgClusterBus::flush_presence() {
  if (unwritten_.empty() || stopped_) return Status{};
  if (!connected_) return make_error(Errc::kUnavailable, "the cluster database is not connected");
  std::vector<std::string> present_ids;
  std::vector<std::string> present_via;
  std::vector<std::string> gone_ids;
  for (const auto& [id, via] : unwritten_) {
    if (via) {
      present_ids.push_back(id);
      present_via.push_back(*via);
    } else {
      gone_ids.push_back(id);
    }
  }
  if (!present_ids.empty()) {
    const std::string sql =
        std::string(
            "INSERT INTO cluster_presence (device_id, instance_id, connected_via, since) SELECT "
            "d, $2, v, ") +
        kNowSql +
        " FROM unnest($1::text[], $3::text[]) AS t(d, v) ON CONFLICT (device_id) DO UPDATE SET "
        "instance_id = excluded.instance_id, connected_via = excluded.connected_via, since = "
        "excluded.since";
    TETHER_ASSIGN_OR_RETURN(
        auto r, exec(sql.c_str(), {array_literal(present_ids), id_, array_literal(present_via)}));
    (void)r;
  }
  if (!gone_ids.empty()) {
    // Only this instance's rows: a device that moved on is another instance's now.
    TETHER_ASSIGN_OR_RETURN(
        auto r, exec("DELETE FROM cluster_presence WHERE instance_id = $1 AND device_id = "
                     "ANY($2::text[])",
                     {id_, array_literal(gone_ids)}));
    (void)r;
  }
  unwritten_.clear();
  return Status{};
}

Result<std::optional<ClusterPresence>> PgClusterBus::locate(const std::string& device_id) {
  const std::string sql =
      "SELECT p.instance_id, i.public_url, p.connected_via FROM cluster_presence p JOIN "
      "cluster_instances i ON i.id = p.instance_id WHERE p.device_id = $1 AND " +
      alive_clause("i.heartbeat_at", settings_.dead_after);
  TETHER_ASSIGN_OR_RETURN(auto result, exec(sql.c_str(), {device_id}));
  if (PQntuples(result.get()) == 0) return std::optional<ClusterPresence>{};
  return std::optional<ClusterPresence>{ClusterPresence{PQgetvalue(result.get(), 0, 0),
                                                        PQgetvalue(result.get(), 0, 1),
                                                        PQgetvalue(result.get(), 0, 2)}};
}

Result<std::unordered_map<std::string, ClusterPresence>> PgClusterBus::remote_presence() {
  const std::string sql =
      "SELECT p.device_id, p.instance_id, i.public_url, p.connected_via FROM cluster_presence p "
      "JOIN cluster_instances i ON i.id = p.instance_id WHERE p.instance_id <> $1 AND " +
      alive_clause("i.heartbeat_at", settings_.dead_after);
  TETHER_ASSIGN_OR_RETURN(auto result, exec(sql.c_str(), {id_}));
  std::unordered_map<std::string, ClusterPresence> out;
  const int rows = PQntuples(result.get());
  out.reserve(static_cast<std::size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    out.emplace(PQgetvalue(result.get(), r, 0),
                ClusterPresence{PQgetvalue(result.get(), r, 1), PQgetvalue(result.get(), r, 2),
                                PQgetvalue(result.get(), r, 3)});
  }
  return out;
}

Result<std::vector<ClusterInstance>> PgClusterBus::live_instances() {
  const std::string sql = "SELECT id, public_url FROM cluster_instances WHERE " +
                          alive_clause("heartbeat_at", settings_.dead_after) + " ORDER BY id";
  TETHER_ASSIGN_OR_RETURN(auto result, exec(sql.c_str(), {}));
  std::vector<ClusterInstance> out;
  for (int r = 0; r < PQntuples(result.get()); ++r) {
    out.push_back(ClusterInstance{PQgetvalue(result.get(), r, 0), PQgetvalue(result.get(), r, 1)});
  }
  return out;
}

Status PgClusterBus::send(const std::string& to_instance, const std::string& message) {
  const std::string sql =
      "WITH m AS (INSERT INTO cluster_messages (to_instance, body, created_at) VALUES ($1, $2, " +
      std::string(kNowSql) + ") RETURNING id) SELECT pg_notify($3, '') FROM m";
  TETHER_ASSIGN_OR_RETURN(auto result,
                          exec(sql.c_str(), {to_instance, message, "tether_" + to_instance}));
  (void)result;
  return Status{};
}

}  // namespace tether::server
