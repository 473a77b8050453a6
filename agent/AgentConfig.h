// tether-agent's settings: the INI schema (every key documented in docs/configuration.md)
// and the paths inside its state directory.
#pragma once

#include <string>

#include "common/Config.h"

namespace tether::agent {

inline constexpr const char* kDefaultConfigFile = "/etc/tether/agent.conf";
inline constexpr const char* kDefaultStateDir = "/var/lib/tether-agent";

[[nodiscard]] const ConfigSchema& agent_config_schema();

// Files in the state directory (0700). Keys and secrets are 0600.
struct StatePaths {
  explicit StatePaths(std::string dir);
  std::string dir;
  std::string key;         // device.key: EC P-256 private key (PEM, 0600)
  std::string cert;        // device.crt: self-signed until enrolled, then issued by the CA
  std::string enrollment;  // enrollment.json: server URL, device id, when
  std::string trust;       // trust.json: the set of trusted CA fingerprints
  std::string status;      // status.json: what the running agent is doing (for `status`)
};

}  // namespace tether::agent
