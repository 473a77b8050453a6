// tether-server's settings: the INI schema, the command line, and the typed values the rest
// of the server reads. Every key is documented in docs/configuration.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/CommandLine.h"
#include "common/Config.h"
#include "common/Log.h"
#include "common/Result.h"

namespace tether::server {

inline constexpr const char* kDefaultServerConfigFile = "/etc/tether/server.conf";
inline constexpr const char* kDefaultServerStateDir = "/var/lib/tether-server";

[[nodiscard]] const ConfigSchema& server_config_schema();
[[nodiscard]] const std::vector<OptionSpec>& server_command_line_options();

struct ServerSettings {
  std::string state_dir = kDefaultServerStateDir;
  Endpoint listen;
  std::uint16_t registration_port = 30001;
  std::string public_url;                // canonical wss://HOST:PORT
  std::vector<std::string> extra_names;  // server.names, for the certificate's SAN
  std::chrono::seconds device_cert_lifetime{0};
  std::chrono::seconds server_cert_lifetime{0};
  std::chrono::seconds token_ttl{0};
  int enroll_rate_per_minute = 30;
  std::chrono::seconds ping_interval{0};
  std::chrono::seconds status_interval{0};
  std::chrono::seconds request_timeout{30};
  std::chrono::milliseconds flush_interval{0};
  log::Level log_level = log::Level::kInfo;
  // LAN features (discovery.*, online.*, wake.*; server/LanDiscovery.h).
  std::uint16_t discovery_device_port = 30005;
  std::chrono::seconds online_check_interval{60};
  int wake_rate = 20;
  // Shadowing (shadow.*): token validity and the cap on sessions at once.
  std::chrono::seconds shadow_token_ttl{30};
  std::size_t shadow_max_sessions = 100;
  // The web app (web.*): where its files and noVNC's are, and its login sessions.
  std::string web_root;
  std::string novnc_root;
  std::chrono::seconds web_session_ttl{12 * 3600};
  int login_rate_per_minute = 10;
  // store.url: "" for SQLite at STATE_DIR/tether.db, or postgresql://... (server/StoreFactory.h).
  // May hold a password: never log it (PostgresStore::describe_url).
  std::string store_url;
};

// Builds the settings from parsed arguments: -c FILE (or the default file and its .d
// directory), then --set, then the dedicated options (--listen, --registration-port).
[[nodiscard]] Result<ServerSettings> load_server_settings(const ParsedArgs& args);
// The typed view of an already loaded Config (tests build one from --set style overrides).
[[nodiscard]] Result<ServerSettings> settings_from_config(const Config& config,
                                                          std::string state_dir);

// The machine's host name ("localhost" if it has none).
[[nodiscard]] std::string local_hostname();

}  // namespace tether::server
