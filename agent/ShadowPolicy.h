// The pure parts of a shadowing session, kept apart so they can be tested without X, logind
// or a server: the local policy decision, where to find the X authority file, and the
// command lines and environments of tether-vnc and tether-shadow-ui.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/Config.h"
#include "protocol/UpMessage.h"

namespace tether::agent {

// The shadow.* settings that decide whether and how a session may run.
struct ShadowPolicyConfig {
  bool allowed = true;
  bool prompt_user = true;
  std::chrono::milliseconds prompt_timeout{30000};
  bool prompt_default_allow = false;
  bool view_only = false;
  bool allow_browser = true;
  bool allow_external = true;
};

[[nodiscard]] ShadowPolicyConfig shadow_policy_from_config(const Config& config);

// What the device's policy makes of a shadow_start, before anyone is asked.
struct ShadowDecision {
  bool allowed = false;
  std::string refusal_message;  // why not (the answer's code is then "policy")
  bool view_only = false;       // the server's request or the local policy
  bool prompt = false;          // ask the user first
  std::chrono::milliseconds prompt_timeout{0};
  bool prompt_default_allow = false;
};

[[nodiscard]] ShadowDecision decide_shadow(const ShadowPolicyConfig& policy,
                                           const protocol::ShadowStart& request);

// shadow.viewers: which viewer kinds the device accepts ("browser", "external", both).
[[nodiscard]] bool viewers_allow(const std::string& viewers, protocol::ViewerKind kind);
// True when every viewer kind `pushed` allows is also allowed by `local` (the server may
// narrow the local choice, never widen it).
[[nodiscard]] bool viewers_within(const std::string& local, const std::string& pushed);

// Where the X authority file of a session is, in this order (the first regular file wins):
//  1. XAUTHORITY in the session leader's environment (/proc/PID/environ): display managers
//     that put it somewhere unguessable (SDDM's /tmp/xauth_*, startx) export it there;
//  2. /run/user/UID/gdm/Xauthority (GDM);
//  3. HOME/.Xauthority of the session's user (startx, LightDM, XDM);
//  4. /var/run/lightdm/root/DISPLAY (LightDM's server file: the greeter's session).
// `root` is prepended to every path (tests use a fake tree; production passes "").
struct XauthorityQuery {
  std::string root;
  uid_t uid = 0;
  std::string user;
  std::string home;
  std::string display;  // ":0"
  pid_t leader = 0;
};
[[nodiscard]] std::vector<std::string> xauthority_candidates(const XauthorityQuery& q);
// The files for the helpers to try, in order (paths without `root`): every candidate up to
// the first that is a regular file, leaving out those that certainly do not exist. One the
// agent may not look into (EACCES: /run/user/UID and homes are 0700, and the agent is not
// root) stays in, for the helper, which runs as the session's user, to try. Empty if none.
[[nodiscard]] std::vector<std::string> find_xauthority(const XauthorityQuery& q);

// Where a helper binary is: `configured` if set, else NAME next to the agent's own
// executable if it exists there, else /usr/libexec/tether/NAME.
[[nodiscard]] std::string helper_path(const std::string& configured, const std::string& name,
                                      const std::string& self_exe);

struct ShadowTarget {
  std::string display;
  // X authority files for the helpers to try in order (--xauthority each); empty: none
  // found, the X server may not need one.
  std::vector<std::string> xauthority;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string user;
  std::string home;
};

struct VncLaunch {
  std::string path;
  int fd = 3;
  bool view_only = false;
  std::string monitor;
  std::string desktop_name;
};

// argv (argv[0] is the path) and environment for exec; never passed through a shell.
[[nodiscard]] std::vector<std::string> vnc_argv(const VncLaunch& launch, const ShadowTarget& t);
[[nodiscard]] std::vector<std::string> prompt_argv(const std::string& ui_path,
                                                   const ShadowTarget& t, const std::string& admin,
                                                   std::chrono::seconds timeout, bool default_allow,
                                                   bool view_only);
[[nodiscard]] std::vector<std::string> indicator_argv(const std::string& ui_path,
                                                      const ShadowTarget& t,
                                                      const std::string& admin, bool view_only);
// DISPLAY, XAUTHORITY (if exactly one file is known), HOME, USER, LOGNAME,
// PATH=/usr/local/bin:/usr/bin:/bin.
[[nodiscard]] std::vector<std::string> child_environment(const ShadowTarget& t);

}  // namespace tether::agent
