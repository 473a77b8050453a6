// `tether-agent register --token TOKEN`: enrolls this device with a server, once.
//
// Order matters for safety: the token's CA fingerprint is checked against the server's
// certificate chain before the secret leaves the device, and nothing is written to the
// state directory until the server has issued a certificate that checks out.
#pragma once

#include <string>

#include "agent/AgentConfig.h"
#include "common/Result.h"

namespace tether::agent {

struct EnrollOptions {
  std::string token;
  bool force = false;  // enroll again even if already enrolled
};

struct EnrollOutcome {
  std::string device_id;
  std::string server_url;
};

[[nodiscard]] Result<EnrollOutcome> enroll(const StatePaths& paths, const EnrollOptions& options);

}  // namespace tether::agent
