#include "server/CtlApp.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "common/CommandLine.h"
#include "common/Duration.h"
#include "common/Hex.h"
#include "common/Version.h"
#include "platform/Pki.h"
#include "server/CtlClient.h"

namespace tether::server {
namespace {

using json = nlohmann::json;

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

const std::vector<OptionSpec>& options() {
  static const std::vector<OptionSpec> specs = {
      {"server", 0, true, "URL", "server, https://HOST:PORT or wss://HOST:PORT"},
      {"token-file", 0, true, "FILE", "admin token file"},
      {"ca-file", 0, true, "FILE", "the server's CA certificate"},
      {"json", 0, false, "", "print JSON"},
      {"ttl", 0, true, "DURATION", "enroll-token create: lifetime (30s, 15m, 24h, 7d)"},
      {"mac", 0, true, "MAC", "enroll-token create: only a device with this MAC may use it"},
      {"help", 'h', false, "", "show help"},
      {"version", 0, false, "", "print the version"},
  };
  return specs;
}

constexpr const char* kUsage =
    "Usage: tetherctl [--server URL] [--token-file FILE] [--ca-file FILE] COMMAND\n"
    "\n"
    "Commands:\n"
    "  enroll-token create [--ttl DURATION] [--mac MAC] [--json]\n"
    "                           make a one-time enrollment token (printed on stdout)\n"
    "  devices [--json]         list devices\n"
    "  device show ID [--json]  show one device\n"
    "  device revoke ID         revoke a device and close its channel\n"
    "  device delete ID         revoke a device and remove it from the list\n"
    "\n"
    "ID is a full device id, a unique prefix of at least 6 hex digits, or a device name.\n"
    "Server, token file and CA file also come from TETHER_SERVER, TETHER_TOKEN_FILE,\n"
    "TETHER_CA_FILE or ~/.config/tether/ctl.conf ([ctl] server=, token_file=, ca_file=).\n"
    "\n"
    "Options:\n";

int fail(const std::string& message, int code = kExitError) {
  (void)std::fprintf(stderr, "tetherctl: %s\n", message.c_str());
  return code;
}

void print_json(const json& j) {
  std::printf("%s\n", j.dump(2, ' ', false, json::error_handler_t::replace).c_str());
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return "";
  return it->get<std::string>();
}
std::int64_t num(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return 0;
  return it->get<std::int64_t>();
}
bool flag(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::string age(std::int64_t t) {
  if (t <= 0) return "never";
  const std::int64_t d = std::max<std::int64_t>(0, std::time(nullptr) - t);
  if (d < 120) return std::to_string(d) + "s ago";
  if (d < 7200) return std::to_string(d / 60) + "m ago";
  if (d < 2 * 86400) return std::to_string(d / 3600) + "h ago";
  return std::to_string(d / 86400) + "d ago";
}

std::string print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

Result<json> list_devices(const CtlClient& client) {
  TETHER_ASSIGN_OR_RETURN(json list, client.call("GET", "/api/v1/devices"));
  if (!list.contains("devices") || !list["devices"].is_array()) {
    return make_error(Errc::kSyntax, "the server's device list has no \"devices\" array");
  }
  return list;
}

// A full id, a unique prefix of >= 6 hex digits, or a name/hostname.
Result<std::string> resolve_device(const CtlClient& client, const std::string& query) {
  if (query.size() == 64 && is_lower_hex(query)) return query;
  TETHER_ASSIGN_OR_RETURN(json list, list_devices(client));
  std::string lowered = query;
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const bool hex_prefix =
      lowered.size() >= 6 && is_lower_hex(lowered + (lowered.size() % 2 ? "0" : ""));
  std::vector<const json*> matches;
  for (const auto& d : list["devices"]) {
    const std::string id = str(d, "id");
    if ((hex_prefix && id.rfind(lowered, 0) == 0) || str(d, "name") == query ||
        str(d, "hostname") == query) {
      matches.push_back(&d);
    }
  }
  if (matches.empty()) {
    return make_error(Errc::kNotFound,
                      "no device matches \"" + query +
                          "\" (use a full id, a prefix of at least 6 hex digits, or a name)");
  }
  if (matches.size() > 1) {
    std::string names;
    for (const json* d : matches) {
      names += "\n  " + str(*d, "id").substr(0, 12) + "  " + str(*d, "name");
    }
    return make_error(Errc::kConflict, "\"" + query + "\" matches several devices:" + names);
  }
  return str(*matches.front(), "id");
}

int cmd_enroll_token(const CtlClient& client, const ParsedArgs& args) {
  json body = json::object();
  if (auto ttl = args.value("ttl")) {
    auto d = parse_duration(*ttl);
    if (!d.ok()) return fail("--ttl: " + d.error().message, kExitUsage);
    const auto seconds = (d->count() + 999) / 1000;
    if (seconds < 1) return fail("--ttl must be at least 1s", kExitUsage);
    body["ttl_s"] = seconds;
  }
  if (auto mac = args.value("mac")) body["mac"] = *mac;
  auto created = client.call("POST", "/api/v1/enroll-tokens", body);
  if (!created.ok()) return fail(created.error().message);
  if (args.has("json")) {
    print_json(*created);
    return 0;
  }
  std::printf("%s\n", str(*created, "token").c_str());
  const std::int64_t expires = num(*created, "expires_at");
  std::string note = "tetherctl: token " + str(*created, "id") + " expires " +
                     pki::format_utc(static_cast<std::time_t>(expires));
  if (!str(*created, "mac").empty()) note += "; only for MAC " + str(*created, "mac");
  (void)std::fprintf(stderr, "%s\n", note.c_str());
  return 0;
}

int cmd_devices(const CtlClient& client, const ParsedArgs& args) {
  auto list = list_devices(client);
  if (!list.ok()) return fail(list.error().message);
  if (args.has("json")) {
    print_json(*list);
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "NAME", "ONLINE", "VIA", "ADDRESS", "VERSION", "LAST SEEN"}};
  for (const auto& d : (*list)["devices"]) {
    const bool online = flag(d, "online");
    rows.push_back({str(d, "id").substr(0, 12), str(d, "name"),
                    flag(d, "revoked") ? "revoked" : (online ? "yes" : "no"),
                    online ? str(d, "connected_via") : "-", str(d, "address"),
                    str(d, "agent_version"), online ? "now" : age(num(d, "last_seen"))});
  }
  (void)std::fputs(print_table(rows).c_str(), stdout);
  if (rows.size() == 1) (void)std::fprintf(stderr, "tetherctl: no devices enrolled yet\n");
  return 0;
}

void print_device(const json& d) {
  std::vector<std::vector<std::string>> rows;
  auto row = [&](std::string k, std::string v) {
    rows.push_back({std::move(k) + ":", std::move(v)});
  };
  const bool online = flag(d, "online");
  row("id", str(d, "id"));
  row("name", str(d, "name"));
  row("hostname", str(d, "hostname"));
  row("online", online ? "yes (" + str(d, "connected_via") + ")" : "no");
  row("address", str(d, "address"));
  row("agent version", str(d, "agent_version"));
  row("os", str(d, "os"));
  std::string macs;
  if (d.contains("macs") && d["macs"].is_array()) {
    for (const auto& m : d["macs"]) {
      if (m.is_string()) macs += (macs.empty() ? "" : ", ") + m.get<std::string>();
    }
  }
  row("macs", macs.empty() ? "-" : macs);
  row("first seen", pki::format_utc(static_cast<std::time_t>(num(d, "first_seen"))));
  row("last seen", online ? "now" : age(num(d, "last_seen")));
  row("certificate", "serial " + str(d, "cert_serial") + ", expires " +
                         pki::format_utc(static_cast<std::time_t>(num(d, "cert_expires"))));
  row("revoked", flag(d, "revoked") ? "yes" : "no");
  if (d.contains("status") && d["status"].is_object()) {
    const auto& s = d["status"];
    row("status", "up " + std::to_string(num(s, "uptime_s")) + "s, memory " +
                      std::to_string(num(s, "mem_available_kb") / 1024) + " of " +
                      std::to_string(num(s, "mem_total_kb") / 1024) + " MiB free");
  }
  if (d.contains("inventory") && d["inventory"].is_object()) {
    const auto& inv = d["inventory"];
    row("hardware", std::to_string(num(inv, "cpu_count")) + " CPU(s) " + str(inv, "cpu_model") +
                        ", " + std::to_string(num(inv, "memory_kb") / 1024) + " MiB");
  }
  (void)std::fputs(print_table(rows).c_str(), stdout);
}

int cmd_device(const CtlClient& client, const ParsedArgs& args) {
  const auto& pos = args.positional();
  if (pos.size() != 3) return fail("usage: tetherctl device show|revoke|delete ID", kExitUsage);
  const std::string& action = pos[1];
  if (action != "show" && action != "revoke" && action != "delete") {
    return fail("unknown device command \"" + action + "\" (show, revoke, delete)", kExitUsage);
  }
  auto id = resolve_device(client, pos[2]);
  if (!id.ok()) return fail(id.error().message);
  if (action == "show") {
    auto device = client.call("GET", "/api/v1/devices/" + *id);
    if (!device.ok()) return fail(device.error().message);
    if (args.has("json")) {
      print_json(*device);
    } else {
      print_device(*device);
    }
    return 0;
  }
  auto done = action == "revoke"
                  ? client.call("POST", "/api/v1/devices/" + *id + "/revoke", json::object())
                  : client.call("DELETE", "/api/v1/devices/" + *id);
  if (!done.ok()) return fail(done.error().message);
  if (args.has("json")) {
    print_json(*done);
  } else {
    std::printf("%s %s\n", action == "revoke" ? "revoked" : "deleted", id->c_str());
  }
  return 0;
}

}  // namespace

int run_ctl(int argc, const char* const* argv) {
  auto args = parse_command_line(argc, argv, options());
  if (!args.ok()) return fail(args.error().message, kExitUsage);
  if (args->has("version")) {
    std::printf("tetherctl %s\n", kVersion);
    return 0;
  }
  const auto& pos = args->positional();
  if (args->has("help") || pos.empty()) {
    std::printf("%s%s", kUsage, format_options_help(options()).c_str());
    return pos.empty() && !args->has("help") ? kExitUsage : 0;
  }
  const std::string& command = pos[0];
  const bool known = (command == "enroll-token" && pos.size() == 2 && pos[1] == "create") ||
                     (command == "devices" && pos.size() == 1) || command == "device";
  if (!known) {
    return fail(
        "unknown command \"" + command + (pos.size() > 1 ? " " + pos[1] : "") + "\" (try --help)",
        kExitUsage);
  }
  CtlSettings flags;
  if (auto v = args->value("server")) flags.server = *v;
  if (auto v = args->value("token-file")) flags.token_file = *v;
  if (auto v = args->value("ca-file")) flags.ca_file = *v;
  auto settings = resolve_ctl_settings(flags, args->has("server"), args->has("token-file"),
                                       args->has("ca-file"));
  if (!settings.ok()) return fail(settings.error().message, kExitUsage);
  auto client = CtlClient::open(*settings);
  if (!client.ok()) {
    return fail(client.error().message,
                client.error().code == Errc::kInvalidArgument ? kExitUsage : kExitError);
  }
  if (command == "enroll-token") return cmd_enroll_token(*client, *args);
  if (command == "devices") return cmd_devices(*client, *args);
  return cmd_device(*client, *args);
}

}  // namespace tether::server
