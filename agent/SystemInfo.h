// What the agent tells the server about the machine it runs on, read from /proc, /sys,
// /etc/os-release and uname. Missing sources give empty fields, never errors: a thin client
// image may lack any of them.
#pragma once

#include <string>
#include <vector>

#include "protocol/UpMessage.h"

namespace tether::agent {

[[nodiscard]] protocol::OsInfo read_os_info();
[[nodiscard]] std::string read_hostname();
[[nodiscard]] protocol::StatusReport read_status_report(int shadow_sessions);
// MAC addresses of the machine's physical-looking interfaces (not loopback, valid unicast),
// canonical form, sorted.
[[nodiscard]] std::vector<std::string> read_macs();

}  // namespace tether::agent
