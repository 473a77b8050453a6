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
#include "server/CtlGateway.h"
#include "server/CtlLan.h"
#include "server/CtlOutput.h"
#include "server/CtlShadow.h"
#include "server/CtlUsers.h"

namespace tether::server {
namespace {

using json = nlohmann::json;

const std::vector<OptionSpec>& options() {
  static const std::vector<OptionSpec> specs = {
      {"server", 0, true, "URL", "server, https://HOST:PORT or wss://HOST:PORT"},
      {"token-file", 0, true, "FILE", "admin token file"},
      {"ca-file", 0, true, "FILE", "the server's CA certificate"},
      {"json", 0, false, "", "print JSON"},
      {"ttl", 0, true, "DURATION",
       "enroll-token create, gateway add: token lifetime (30s, 15m, 24h, 7d)"},
      {"mac", 0, true, "MAC", "enroll-token create: only a device with this MAC may use it"},
      {"via", 0, true, "NAME",
       "enroll-token create: the device enrolls and connects through this gateway"},
      {"url", 0, true, "URL", "gateway add: where the gateway listens, wss://HOST:PORT"},
      {"set", 0, true, "KEY=VALUE", "device settings: set one setting (repeatable)"},
      {"unset", 0, true, "KEY", "device settings: stop managing one setting (repeatable)"},
      {"get", 0, false, "", "device settings: show the settings (the default)"},
      {"password-file", 0, true, "FILE", "user add: the password (first line of FILE)"},
      {"broadcast", 0, true, "ADDR", "scan: probe this broadcast address"},
      {"range", 0, true, "CIDR", "scan: probe every address of this range (at most a /16)"},
      {"tcp", 0, false, "", "scan: connect over TCP (across routers) instead of UDP"},
      {"register", 0, false, "", "scan: ask the unregistered devices found to register"},
      {"timeout", 0, true, "DURATION", "scan, online: how long to wait for answers"},
      {"wait", 0, true, "DURATION",
       "wake: wait until the device is up; scan --register: "
       "how long to wait for enrollments (default 60s)"},
      {"listen", 0, true, "ADDR:PORT",
       "shadow: where VNC viewers connect (default 127.0.0.1:0, a free port)"},
      {"view-only", 0, false, "", "shadow: ask for a session without keyboard and mouse"},
      {"monitor", 0, true, "NAME", "shadow: one monitor (XRandR output) instead of the desktop"},
      {"device", 0, true, "ID", "audit: only this device's sessions"},
      {"limit", 0, true, "N", "audit: at most N sessions (default 100)"},
      {"help", 'h', false, "", "show help"},
      {"version", 0, false, "", "print the version"},
  };
  return specs;
}

constexpr const char* kUsage =
    "Usage: tetherctl [--server URL] [--token-file FILE] [--ca-file FILE] COMMAND\n"
    "\n"
    "Commands:\n"
    "  enroll-token create [--ttl DURATION] [--mac MAC] [--via GATEWAY] [--json]\n"
    "                           make a one-time enrollment token (printed on stdout);\n"
    "                           --via: it names the gateway's URL instead of the server's\n"
    "  devices [--json]         list devices\n"
    "  device show ID [--json]  show one device, with its hardware inventory\n"
    "  device revoke ID         revoke a device and close its channel\n"
    "  device delete ID         revoke a device and remove it from the list\n"
    "  device reboot ID [--json]\n"
    "  device poweroff ID [--json]\n"
    "                           ask the device to reboot or power off (through logind);\n"
    "                           prints what the device answered\n"
    "  device settings ID [--set KEY=VALUE]... [--unset KEY]... [--get] [--json]\n"
    "                           change the agent settings the server manages for the\n"
    "                           device (applied at once when it is online, else when it\n"
    "                           next connects), or show them (--get, the default):\n"
    "                           effective value, where it comes from, the server's value\n"
    "  shadow DEVICE [--listen ADDR:PORT] [--view-only] [--monitor NAME] [--json]\n"
    "                           shadow the device's desktop: proxies one local VNC viewer\n"
    "                           connection (vncviewer ADDR::PORT) to it; exits when the\n"
    "                           viewer leaves\n"
    "  audit [--device ID] [--limit N] [--json]\n"
    "                           the shadowing audit log, newest first\n"
    "  user add NAME [--password-file FILE] [--json]\n"
    "                           add a web app user; without a file the server makes a\n"
    "                           strong password, printed once\n"
    "  user list [--json]       list the web app's users\n"
    "  user remove NAME         remove a user (and end their sessions)\n"
    "  gateway add NAME --url wss://HOST:PORT [--ttl DURATION] [--json]\n"
    "                           register a gateway; prints its one-time join token\n"
    "                           (tether-gateway --join TOKEN)\n"
    "  gateway list [--json]    list gateways: joined, link state, devices through them\n"
    "  gateway remove NAME      forget a gateway (the server stops connecting to it)\n"
    "  scan [--broadcast ADDR | --range CIDR] [--tcp] [--timeout S] [--register [--wait S]]\n"
    "       [--json]            find devices on the LAN (UDP broadcast by default, or every\n"
    "                           address of a range, over TCP with --tcp); --register asks\n"
    "                           the unregistered ones found to register and waits for them\n"
    "  online ID... [--timeout S] [--json]\n"
    "                           is the device up? (UP channel, else an authenticated UDP\n"
    "                           probe; default timeout 1s)\n"
    "  wake ID... [--wait S] [--json]\n"
    "                           send wake-on-LAN magic packets (from the server and from an\n"
    "                           online agent in the device's subnet); --wait: until it is up\n"
    "  auto-register on|off|status\n"
    "                           let devices that find the server by themselves register\n"
    "\n"
    "ID is a full device id, a unique prefix of at least 6 hex digits, or a device name.\n"
    "Server, token file and CA file also come from TETHER_SERVER, TETHER_TOKEN_FILE,\n"
    "TETHER_CA_FILE or ~/.config/tether/ctl.conf ([ctl] server=, token_file=, ca_file=).\n"
    "\n"
    "Options:\n";

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

std::string print_table(const std::vector<std::vector<std::string>>& raw_rows) {
  // Cells often hold what a device reported: never let it reach the terminal raw.
  std::vector<std::vector<std::string>> rows;
  for (const auto& raw : raw_rows) {
    auto& row = rows.emplace_back();
    for (const auto& cell : raw) row.push_back(terminal_text(cell));
  }
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
  if (auto via = args.value("via")) body["via"] = *via;
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
  if (!str(*created, "via").empty()) note += "; through gateway " + str(*created, "via");
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

const json& array_at(const json& j, const char* key) {
  static const json kEmpty = json::array();
  auto it = j.find(key);
  return it != j.end() && it->is_array() ? *it : kEmpty;
}

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

std::vector<std::string> strings_at(const json& j, const char* key) {
  std::vector<std::string> out;
  for (const auto& item : array_at(j, key)) {
    if (item.is_string()) out.push_back(item.get<std::string>());
  }
  return out;
}

std::string size_text(std::int64_t bytes) {
  constexpr std::int64_t kGiB = 1024LL * 1024 * 1024;
  if (bytes >= 100 * kGiB) return std::to_string(bytes / kGiB) + " GiB";
  if (bytes >= kGiB) {
    char buf[32];
    (void)std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / kGiB);
    return buf;
  }
  return std::to_string(bytes / (1024 * 1024)) + " MiB";
}

std::string wol_text(const json& nic) {
  const std::string supported = str(nic, "wol_supported");
  const std::string enabled = str(nic, "wol_enabled");
  if (supported.empty() || supported == "d") return "WoL unsupported";
  const bool on = !enabled.empty() && enabled != "d";
  return "WoL " + (on ? "on (" + enabled + ")" : std::string("off")) + ", supports " + supported;
}

// Lines of a sub-table, its columns aligned.
std::vector<std::string> table_lines(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::string> out;
  const std::string text = print_table(rows);
  std::size_t start = 0;
  while (start < text.size()) {
    const auto end = text.find('\n', start);
    std::string line = text.substr(start, end - start);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out.push_back(std::move(line));
    start = end + 1;
  }
  return out;
}

// The inventory, compactly: one line per NIC, disk, USB device and display.
template <typename Row>
void add_inventory(const json& inv, Row&& row) {
  const std::string model = str(inv, "cpu_model");
  row("cpu", std::to_string(num(inv, "cpu_count")) + " x " + (model.empty() ? "?" : model));
  row("memory", std::to_string(num(inv, "memory_kb") / 1024) + " MiB");
  auto section = [&](const std::string& title, const std::vector<std::vector<std::string>>& rows) {
    if (rows.empty()) {
      row(title, "-");
      return;
    }
    const auto lines = table_lines(rows);
    for (std::size_t i = 0; i < lines.size(); ++i) row(i == 0 ? title : "", lines[i]);
  };
  std::vector<std::vector<std::string>> nics;
  for (const auto& n : array_at(inv, "nics")) {
    std::string link = flag(n, "link_up") ? "up" : "down";
    if (n.contains("speed_mbps") && n["speed_mbps"].is_number_integer()) {
      link += " " + std::to_string(num(n, "speed_mbps")) + " Mb/s";
    }
    const auto addresses = strings_at(n, "addresses");
    nics.push_back({str(n, "name"), str(n, "mac").empty() ? "-" : str(n, "mac"), link,
                    addresses.empty() ? "-" : join(addresses, ", "), wol_text(n)});
  }
  section("nics", nics);
  std::vector<std::vector<std::string>> disks;
  for (const auto& b : array_at(inv, "block_devices")) {
    disks.push_back({str(b, "name"), size_text(num(b, "size_bytes")),
                     str(b, "model").empty() ? "-" : str(b, "model"),
                     flag(b, "removable") ? "removable" : ""});
  }
  section("disks", disks);
  std::vector<std::vector<std::string>> usb;
  for (const auto& u : array_at(inv, "usb_devices")) {
    std::vector<std::string> parts;
    for (const char* key : {"manufacturer", "product"}) {
      if (!str(u, key).empty()) parts.push_back(str(u, key));
    }
    const std::string name = join(parts, " ");
    usb.push_back({str(u, "vendor_id") + ":" + str(u, "product_id"), name.empty() ? "-" : name,
                   str(u, "serial").empty() ? "" : "serial " + str(u, "serial")});
  }
  section("usb", usb);
  std::vector<std::vector<std::string>> displays;
  for (const auto& dsp : array_at(inv, "displays")) {
    const auto modes = strings_at(dsp, "modes");
    std::string mode_text = modes.empty() ? "-" : modes.front();
    if (modes.size() > 1) mode_text += " (+" + std::to_string(modes.size() - 1) + " modes)";
    displays.push_back(
        {str(dsp, "connector"), flag(dsp, "connected") ? "connected" : "disconnected", mode_text});
  }
  section("displays", displays);
}

void print_device(const json& d) {
  std::vector<std::vector<std::string>> rows;
  auto row = [&](std::string k, std::string v) {
    rows.push_back({k.empty() ? k : k + ":", std::move(v)});  // "" continues the row above
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
  if (num(d, "last_seen_udp") > 0) row("last online probe answer", age(num(d, "last_seen_udp")));
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
    add_inventory(d["inventory"], row);
  } else {
    row("inventory", "none reported yet");
  }
  if (!str(d, "settings_error").empty()) row("settings error", str(d, "settings_error"));
  (void)std::fputs(print_table(rows).c_str(), stdout);
}

// A device's answer to reboot/poweroff.
int cmd_power(const CtlClient& client, const ParsedArgs& args, const std::string& id,
              const std::string& action) {
  auto response = client.exchange("POST", "/api/v1/devices/" + id + "/" + action, json::object(),
                                  kCtlDeviceCallTimeout);
  if (!response.ok()) return fail(response.error().message);
  const bool ok = response->status >= 200 && response->status < 300;
  if (args.has("json")) print_json(response->body);
  if (!ok) return fail(response->error_message());
  if (!args.has("json")) std::printf("%s requested: the device accepted\n", action.c_str());
  return 0;
}

// --set KEY=VALUE and --unset KEY as the API's settings change.
Result<json> settings_change(const ParsedArgs& args) {
  json set = json::object();
  for (const auto& item : args.values("set")) {
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return make_error(Errc::kInvalidArgument, "--set wants KEY=VALUE, not \"" + item + "\"");
    }
    set[item.substr(0, eq)] = item.substr(eq + 1);
  }
  json unset = json::array();
  for (const auto& key : args.values("unset")) unset.push_back(key);
  return json{{"set", set}, {"unset", unset}};
}

std::string value_or_dash(const json& j, const std::string& key) {
  if (!j.is_object()) return "-";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "-";
}

void print_settings(const json& body) {
  const json empty = json::object();
  const json& server =
      body.contains("server") && body["server"].is_object() ? body["server"] : empty;
  const json& effective =
      body.contains("effective") && body["effective"].is_object() ? body["effective"] : empty;
  const json& origins =
      body.contains("origins") && body["origins"].is_object() ? body["origins"] : empty;
  std::vector<std::string> keys;
  for (const auto& [key, value] : effective.items()) keys.push_back(key);
  for (const auto& [key, value] : server.items()) {
    if (!effective.contains(key)) keys.push_back(key);
  }
  std::sort(keys.begin(), keys.end());
  std::vector<std::vector<std::string>> rows = {{"KEY", "EFFECTIVE", "ORIGIN", "SERVER VALUE"}};
  for (const auto& key : keys) {
    // "*" marks the keys the server manages for this device.
    rows.push_back({(server.contains(key) ? "* " : "  ") + key, value_or_dash(effective, key),
                    value_or_dash(origins, key), value_or_dash(server, key)});
  }
  (void)std::fputs(print_table(rows).c_str(), stdout);
  if (!flag(body, "online")) {
    (void)std::fprintf(stderr,
                       "tetherctl: the device is offline: only the server's values are known\n");
  } else if (!str(body, "effective_error").empty()) {
    (void)std::fprintf(stderr, "tetherctl: the device did not report its settings: %s\n",
                       str(body, "effective_error").c_str());
  }
  if (!str(body, "settings_error").empty()) {
    (void)std::fprintf(stderr, "tetherctl: the device refused the server's settings: %s\n",
                       str(body, "settings_error").c_str());
  }
}

int cmd_settings(const CtlClient& client, const ParsedArgs& args, const std::string& id) {
  const std::string path = "/api/v1/devices/" + id + "/settings";
  const bool change = args.has("set") || args.has("unset");
  if (change) {
    auto body = settings_change(args);
    if (!body.ok()) return fail(body.error().message, kExitUsage);
    auto response = client.exchange("PUT", path, *body, kCtlDeviceCallTimeout);
    if (!response.ok()) return fail(response.error().message);
    const bool ok = response->status >= 200 && response->status < 300;
    if (args.has("json")) print_json(response->body);
    if (!ok) return fail(response->error_message());
    if (!args.has("json")) {
      if (response->status == 202) {
        std::printf("stored: pending until the device is online\n");
      } else {
        const json& changed =
            response->body.contains("changed") && response->body["changed"].is_object()
                ? response->body["changed"]
                : json::object();
        if (changed.empty()) std::printf("applied: nothing changed\n");
        for (const auto& [key, diff] : changed.items()) {
          std::printf("changed %s: %s -> %s\n", key.c_str(), value_or_dash(diff, "old").c_str(),
                      value_or_dash(diff, "new").c_str());
        }
      }
    }
    if (!args.has("get")) return 0;
  }
  auto shown = client.call("GET", path, std::nullopt, kCtlDeviceCallTimeout);
  if (!shown.ok()) return fail(shown.error().message);
  if (args.has("json")) {
    print_json(*shown);
  } else {
    print_settings(*shown);
  }
  return 0;
}

int cmd_device(const CtlClient& client, const ParsedArgs& args) {
  const auto& pos = args.positional();
  constexpr const char* kActions = "show, revoke, delete, reboot, poweroff, settings";
  if (pos.size() != 3) {
    return fail(std::string("usage: tetherctl device ACTION ID (") + kActions + ")", kExitUsage);
  }
  const std::string& action = pos[1];
  if (action != "show" && action != "revoke" && action != "delete" && action != "reboot" &&
      action != "poweroff" && action != "settings") {
    return fail("unknown device command \"" + action + "\" (" + kActions + ")", kExitUsage);
  }
  if (action != "settings" && (args.has("set") || args.has("unset") || args.has("get"))) {
    return fail("--set, --unset and --get go with \"device settings\"", kExitUsage);
  }
  auto id = resolve_device(client, pos[2]);
  if (!id.ok()) return fail(id.error().message);
  if (action == "reboot" || action == "poweroff") return cmd_power(client, args, *id, action);
  if (action == "settings") return cmd_settings(client, args, *id);
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
                     (command == "devices" && pos.size() == 1) || command == "device" ||
                     command == "user" || command == "gateway" || is_lan_command(pos) ||
                     is_shadow_command(pos);
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
  if (command == "user") return run_user_command(*client, *args);
  if (command == "gateway") return run_gateway_command(*client, *args);
  if (is_shadow_command(pos)) {
    return run_shadow_command(*client, *args,
                              [&](const std::string& q) { return resolve_device(*client, q); });
  }
  if (is_lan_command(pos)) {
    return run_lan_command(*client, *args,
                           [&](const std::string& q) { return resolve_device(*client, q); });
  }
  return cmd_device(*client, *args);
}

}  // namespace tether::server
