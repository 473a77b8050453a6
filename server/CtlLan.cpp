#include "server/CtlLan.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "common/Duration.h"
#include "server/CtlOutput.h"

namespace tether::server {
namespace {

using json = nlohmann::json;
// Not every device answered (online), was found (scan --register) or came up (wake --wait).
constexpr int kExitPartial = 3;

void print_rows(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

Result<std::int64_t> duration_ms(const ParsedArgs& args, const char* name) {
  auto value = args.value(name);
  if (!value) return std::int64_t{-1};
  auto d = parse_duration(*value);
  if (!d.ok()) return d.error().context("--" + std::string(name));
  return static_cast<std::int64_t>(d->count());
}

Result<std::vector<std::string>> resolve_all(
    const ParsedArgs& args, const std::function<Result<std::string>(const std::string&)>& resolve) {
  const auto& pos = args.positional();
  std::vector<std::string> ids;
  for (std::size_t i = 1; i < pos.size(); ++i) {
    TETHER_ASSIGN_OR_RETURN(std::string id, resolve(pos[i]));
    ids.push_back(id);
  }
  if (ids.empty()) return make_error(Errc::kInvalidArgument, "name at least one device");
  return ids;
}

std::string short_id(const std::string& id) {
  return id.size() > 12 ? id.substr(0, 12) : id;
}

int cmd_scan(const CtlClient& client, const ParsedArgs& args) {
  json body = json::object();
  if (auto b = args.value("broadcast")) body["broadcast"] = *b;
  if (auto r = args.value("range")) body["range"] = *r;
  if (args.has("tcp")) body["tcp"] = true;
  if (args.has("register")) body["register"] = true;
  auto timeout = duration_ms(args, "timeout");
  if (!timeout.ok()) return fail(timeout.error().message, kExitUsage);
  if (*timeout >= 0) body["timeout_ms"] = *timeout;
  auto wait = duration_ms(args, "wait");
  if (!wait.ok()) return fail(wait.error().message, kExitUsage);
  if (*wait >= 0) body["register_wait_ms"] = *wait;
  auto started = client.call("POST", "/api/v1/scan", body);
  if (!started.ok()) return fail(started.error().message);
  const std::string id = started->value("id", "");
  const bool show_progress = !args.has("json") && ::isatty(STDERR_FILENO);
  const bool long_scan = started->value("total", 0) > 16;
  json job = *started;
  std::string last_phase;
  while (job.value("state", "") != "done") {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    auto polled = client.call("GET", "/api/v1/scan/" + id);
    if (!polled.ok()) return fail(polled.error().message);
    job = std::move(*polled);
    const std::string phase = job.value("phase", "");
    if (long_scan && phase == "probing") {
      (void)std::fprintf(stderr, show_progress ? "\rprobed %lld/%lld" : "probed %lld/%lld\n",
                         static_cast<long long>(job.value("probed", 0)),
                         static_cast<long long>(job.value("total", 0)));
    } else if (phase != last_phase && phase == "registering") {
      (void)std::fprintf(stderr, "%sregistering the unregistered devices found...\n",
                         show_progress && long_scan ? "\n" : "");
    }
    last_phase = phase;
  }
  if (show_progress && long_scan && last_phase == "probing") (void)std::fprintf(stderr, "\n");
  if (args.has("json")) {
    print_json(job);
  } else {
    const bool reg = args.has("register");
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"ADDRESS", "MAC", "HOSTNAME", "VERSION", "REGISTERED", "DEVICE"});
    if (reg) rows[0].push_back("REGISTRATION");
    for (const auto& d : job.value("devices", json::array())) {
      std::string registered = d.value("registered", false)
                                   ? (d.value("registered_here", false) ? "here" : "elsewhere")
                                   : "no";
      std::vector<std::string> row = {
          text(d, "address"),
          text(d, "mac"),
          text(d, "hostname"),
          text(d, "version"),
          registered,
          d["device_id"].is_string() ? short_id(d["device_id"].get<std::string>()) : "-"};
      if (reg && d.contains("registration")) {
        row.push_back(text(d["registration"], "status") + ": " +
                      text(d["registration"], "message"));
      }
      rows.push_back(std::move(row));
    }
    print_rows(rows);
    (void)std::fprintf(stderr, "%zu device(s) found (%s)\n", rows.size() - 1,
                       job.value("mode", "").c_str());
  }
  if (args.has("register")) {
    for (const auto& d : job.value("devices", json::array())) {
      const std::string status =
          d.contains("registration") ? text(d["registration"], "status") : "";
      if (status == "timeout" || status == "failed") return kExitPartial;
    }
  }
  return 0;
}

int cmd_online(const CtlClient& client, const ParsedArgs& args,
               const std::function<Result<std::string>(const std::string&)>& resolve) {
  auto ids = resolve_all(args, resolve);
  if (!ids.ok()) return fail(ids.error().message, kExitUsage);
  auto timeout = duration_ms(args, "timeout");
  if (!timeout.ok()) return fail(timeout.error().message, kExitUsage);
  json body = {{"devices", *ids}, {"timeout_ms", *timeout >= 0 ? *timeout : 1000}};
  auto answer = client.call("POST", "/api/v1/online", body);
  if (!answer.ok()) return fail(answer.error().message);
  bool all = true;
  std::vector<std::vector<std::string>> rows = {{"DEVICE", "ONLINE", "SOURCE", "MESSAGE"}};
  for (const auto& d : answer->value("devices", json::array())) {
    all = all && d.value("online", false);
    rows.push_back({short_id(d.value("id", "")), d.value("online", false) ? "yes" : "no",
                    text(d, "source"), text(d, "message")});
  }
  if (args.has("json")) {
    print_json(*answer);
  } else {
    print_rows(rows);
  }
  return all ? 0 : kExitPartial;
}

int cmd_wake(const CtlClient& client, const ParsedArgs& args,
             const std::function<Result<std::string>(const std::string&)>& resolve) {
  auto ids = resolve_all(args, resolve);
  if (!ids.ok()) return fail(ids.error().message, kExitUsage);
  auto wait = duration_ms(args, "wait");
  if (!wait.ok()) return fail(wait.error().message, kExitUsage);
  json body = {{"devices", *ids}, {"wait_ms", *wait >= 0 ? *wait : 0}};
  auto answer = client.call("POST", "/api/v1/wake", body, kCtlDeviceCallTimeout);
  if (!answer.ok()) return fail(answer.error().message);
  if (args.has("json")) {
    print_json(*answer);
  }
  bool ok = true;
  for (const auto& d : answer->value("devices", json::array())) {
    const bool sent = !d.value("sent", json::array()).empty();
    ok = ok && (sent || d.value("came_online", false)) &&
         (*wait <= 0 || d.value("came_online", false));
    if (args.has("json")) continue;
    std::printf("%s (%s): %s\n", short_id(d.value("id", "")).c_str(), text(d, "hostname").c_str(),
                text(d, "message").c_str());
    for (const auto& s : d.value("sent", json::array())) {
      std::string to;
      if (s.contains("to") && s["to"].is_array()) {
        for (const auto& t : s["to"]) to += (to.empty() ? "" : ", ") + t.get<std::string>();
      } else {
        to = text(s, "to");
      }
      std::printf("  sent by %s to %s%s\n", text(s, "by").c_str(), to.c_str(),
                  s.contains("status") ? (" (" + text(s, "status") + ")").c_str() : "");
    }
    for (const auto& p : d.value("problems", json::array())) {
      std::printf("  %s\n", p.is_string() ? p.get<std::string>().c_str() : p.dump().c_str());
    }
  }
  return ok ? 0 : kExitPartial;
}

int cmd_auto_register(const CtlClient& client, const ParsedArgs& args) {
  const auto& pos = args.positional();
  const std::string what = pos.size() > 1 ? pos[1] : "status";
  Result<json> answer = json::object();
  if (what == "on" || what == "off") {
    answer =
        client.call("PUT", "/api/v1/settings/auto-registration", json{{"enabled", what == "on"}});
  } else if (what == "status") {
    answer = client.call("GET", "/api/v1/settings/auto-registration");
  } else {
    return fail("auto-register takes on, off or status", kExitUsage);
  }
  if (!answer.ok()) return fail(answer.error().message);
  if (args.has("json")) {
    print_json(*answer);
    return 0;
  }
  std::printf("auto-registration: %s\n", answer->value("enabled", false) ? "on" : "off");
  if (answer->contains("token_requests")) {
    const auto& c = (*answer)["token_requests"];
    std::printf(
        "token requests since start: %lld (issued %lld, disabled %lld, refused %lld, "
        "wrong server %lld, malformed %lld)\n",
        static_cast<long long>(c.value("total", 0)), static_cast<long long>(c.value("issued", 0)),
        static_cast<long long>(c.value("disabled", 0)),
        static_cast<long long>(c.value("refused", 0)),
        static_cast<long long>(c.value("wrong_server", 0)),
        static_cast<long long>(c.value("malformed", 0)));
  }
  return 0;
}

}  // namespace

bool is_lan_command(const std::vector<std::string>& pos) {
  if (pos.empty()) return false;
  const std::string& c = pos[0];
  return (c == "scan" && pos.size() == 1) || c == "online" || c == "wake" ||
         (c == "auto-register" && pos.size() <= 2);
}

int run_lan_command(const CtlClient& client, const ParsedArgs& args,
                    const std::function<Result<std::string>(const std::string&)>& resolve) {
  const std::string& c = args.positional()[0];
  if (c == "scan") return cmd_scan(client, args);
  if (c == "online") return cmd_online(client, args, resolve);
  if (c == "wake") return cmd_wake(client, args, resolve);
  return cmd_auto_register(client, args);
}

}  // namespace tether::server
