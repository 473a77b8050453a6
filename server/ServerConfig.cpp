#include "server/ServerConfig.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <climits>

#include "protocol/EnrollmentToken.h"
#include "server/DaemonConfig.h"

namespace tether::server {
namespace {

constexpr std::int64_t kSecond = 1000;
constexpr std::int64_t kDay = 86400 * kSecond;

std::vector<std::string> split_names(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const auto end = comma == std::string::npos ? text.size() : comma;
    std::string item = text.substr(start, end - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::chrono::seconds seconds_of(const Config& config, const char* key) {
  return std::chrono::duration_cast<std::chrono::seconds>(config.duration(key));
}

}  // namespace

const ConfigSchema& server_config_schema() {
  static const ConfigSchema schema = {
      {"server.listen", SettingType::kEndpoint, "0.0.0.0:8443",
       "address and port of the TLS listener (UP WebSocket, enrollment, REST API)"},
      {"server.registration_port", SettingType::kInteger, "30001",
       "TCP port where devices found by a scan ask for a registration token", 1, 65535},
      {"server.public_url", SettingType::kString, "",
       "wss://HOST:PORT that devices use to reach this server; empty: derived from "
       "server.listen and the host name"},
      {"server.names", SettingType::kString, "",
       "extra DNS names and IP addresses for the server certificate, comma separated"},
      {"pki.device_cert_lifetime", SettingType::kDuration, "90d",
       "lifetime of the certificates issued to devices", 10 * kSecond, 3650 * kDay},
      {"pki.server_cert_lifetime", SettingType::kDuration, "365d",
       "lifetime of the server's own TLS certificate", kDay, 3650 * kDay},
      {"enroll.token_ttl", SettingType::kDuration, "24h", "default lifetime of an enrollment token",
       kSecond, 30 * kDay},
      {"enroll.rate_per_minute", SettingType::kInteger, "30",
       "enrollment attempts allowed per source address and minute", 1, 100000},
      {"up.ping_interval", SettingType::kDuration, "30s",
       "idle time before the server pings a device; a silent device is dropped after two", kSecond,
       3600 * kSecond},
      {"up.status_interval", SettingType::kDuration, "60s",
       "how often agents send status (told to them in HelloAck)", 5 * kSecond, kDay},
      {"up.request_timeout", SettingType::kDuration, "30s",
       "how long the server waits for a device's answer to a command or settings change", kSecond,
       300 * kSecond},
      {"up.flush_interval", SettingType::kDuration, "60s",
       "how often last-seen times and status reports are written to the database", kSecond, kDay},
      {"web.root", SettingType::kString, TETHER_WEBAPP_DIR,
       "directory of the web app's files (index.html, app.js, ...)"},
      {"web.novnc_root", SettingType::kString, "/usr/share/novnc",
       "directory of noVNC (Debian's novnc package), served under /novnc/"},
      {"web.session_ttl", SettingType::kDuration, "12h",
       "lifetime of a login session of the web app", 60 * kSecond, 30 * kDay},
      {"web.login_rate_per_minute", SettingType::kInteger, "10",
       "login attempts allowed per source address and minute", 1, 100000},
      {"shadow.token_ttl", SettingType::kDuration, "30s",
       "how long the tokens of a shadowing session stay valid (after the device accepted) for "
       "its two ends to connect",
       kSecond, 600 * kSecond},
      {"shadow.max_sessions", SettingType::kInteger, "100",
       "shadowing sessions the server runs at once", 1, 100000},
      {"discovery.device_port", SettingType::kInteger, "30005",
       "UDP/TCP port of the devices' discovery responders (scan, online check, registration "
       "request)",
       1, 65535},
      {"online.check_interval", SettingType::kDuration, "60s",
       "how often the server checks over UDP whether devices without a channel are online; 0 "
       "turns it off",
       0, kDay},
      {"wake.rate", SettingType::kInteger, "20", "devices woken per second in a bulk wake-on-LAN",
       1, 10000},
      {"store.url", SettingType::kString, "",
       "where the server keeps its registry: empty for SQLite in the state directory "
       "(tether.db), postgresql://[USER@]HOST[:PORT]/DB for PostgreSQL (several instances on "
       "one database)"},
      log_level_setting(),
  };
  return schema;
}

const std::vector<OptionSpec>& server_command_line_options() {
  static const std::vector<OptionSpec> options = {
      {"config", 'c', true, "FILE", "configuration file (default /etc/tether/server.conf)"},
      {"state-dir", 0, true, "DIR", "state directory (default /var/lib/tether-server)"},
      {"set", 0, true, "SECTION.KEY=VALUE", "override one setting (repeatable)"},
      {"listen", 0, true, "ADDR:PORT", "same as --set server.listen=ADDR:PORT"},
      {"registration-port", 0, true, "PORT", "same as --set server.registration_port=PORT"},
      {"help", 'h', false, "", "show this help"},
      {"version", 0, false, "", "print the version"},
  };
  return options;
}

std::string local_hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

Result<ServerSettings> settings_from_config(const Config& config, std::string state_dir) {
  ServerSettings s;
  s.state_dir = std::move(state_dir);
  TETHER_ASSIGN_OR_RETURN(s.listen, parse_endpoint(config.string("server.listen")));
  s.registration_port = static_cast<std::uint16_t>(config.integer("server.registration_port"));
  s.extra_names = split_names(config.string("server.names"));

  std::string url = config.string("server.public_url");
  if (url.empty()) {
    std::string host = s.listen.host;
    if (host == "0.0.0.0" || host == "::") host = local_hostname();
    url = protocol::ServerUrl{host, s.listen.port}.to_string();
  }
  auto parsed = protocol::parse_server_url(url);
  if (!parsed.ok()) {
    return parsed.error().context("server.public_url (" + config.origin("server.public_url") + ")");
  }
  s.public_url = parsed->to_string();

  s.device_cert_lifetime = seconds_of(config, "pki.device_cert_lifetime");
  s.server_cert_lifetime = seconds_of(config, "pki.server_cert_lifetime");
  s.token_ttl = seconds_of(config, "enroll.token_ttl");
  s.enroll_rate_per_minute = static_cast<int>(config.integer("enroll.rate_per_minute"));
  s.ping_interval = seconds_of(config, "up.ping_interval");
  s.status_interval = seconds_of(config, "up.status_interval");
  s.request_timeout = seconds_of(config, "up.request_timeout");
  s.flush_interval = config.duration("up.flush_interval");
  s.discovery_device_port = static_cast<std::uint16_t>(config.integer("discovery.device_port"));
  s.online_check_interval = seconds_of(config, "online.check_interval");
  s.wake_rate = static_cast<int>(config.integer("wake.rate"));
  s.web_root = config.string("web.root");
  s.novnc_root = config.string("web.novnc_root");
  s.web_session_ttl = seconds_of(config, "web.session_ttl");
  s.login_rate_per_minute = static_cast<int>(config.integer("web.login_rate_per_minute"));
  s.shadow_token_ttl = seconds_of(config, "shadow.token_ttl");
  s.shadow_max_sessions = static_cast<std::size_t>(config.integer("shadow.max_sessions"));
  s.store_url = config.string("store.url");
  if (!s.store_url.empty() && !s.store_url.starts_with("postgresql://") &&
      !s.store_url.starts_with("postgres://")) {
    // The value itself is left out: it may hold a password.
    return make_error(Errc::kBadValue, config.origin("store.url") +
                                           ": store.url must be empty (SQLite in the state "
                                           "directory) or start with postgresql:// or "
                                           "postgres://");
  }
  TETHER_ASSIGN_OR_RETURN(s.log_level, daemon_log_level(config));
  return s;
}

Result<ServerSettings> load_server_settings(const ParsedArgs& args) {
  TETHER_ASSIGN_OR_RETURN(Config config,
                          load_daemon_config(args, server_config_schema(), kDefaultServerConfigFile,
                                             {{"listen", "server.listen"},
                                              {"registration-port", "server.registration_port"}}));
  TETHER_ASSIGN_OR_RETURN(std::string state_dir, daemon_state_dir(args, kDefaultServerStateDir));
  return settings_from_config(config, std::move(state_dir));
}

}  // namespace tether::server
