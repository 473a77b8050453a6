#include "agent/ShadowPolicy.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/FileIo.h"

namespace tether::agent {

bool viewers_allow(const std::string& viewers, protocol::ViewerKind kind) {
  const std::string_view name = protocol::viewer_kind_name(kind);
  std::size_t start = 0;
  while (start <= viewers.size()) {
    const std::size_t comma = std::min(viewers.find(',', start), viewers.size());
    if (std::string_view(viewers).substr(start, comma - start) == name) return true;
    start = comma + 1;
  }
  return false;
}

bool viewers_within(const std::string& local, const std::string& pushed) {
  for (auto kind : {protocol::ViewerKind::kBrowser, protocol::ViewerKind::kExternal}) {
    if (viewers_allow(pushed, kind) && !viewers_allow(local, kind)) return false;
  }
  return true;
}

ShadowPolicyConfig shadow_policy_from_config(const Config& config) {
  ShadowPolicyConfig p;
  p.allowed = config.boolean("shadow.allowed");
  p.prompt_user = config.boolean("shadow.prompt_user");
  p.prompt_timeout = config.duration("shadow.prompt_timeout");
  p.prompt_default_allow = config.string("shadow.prompt_default") == "allow";
  p.view_only = config.boolean("shadow.view_only");
  const std::string& viewers = config.string("shadow.viewers");
  p.allow_browser = viewers_allow(viewers, protocol::ViewerKind::kBrowser);
  p.allow_external = viewers_allow(viewers, protocol::ViewerKind::kExternal);
  return p;
}

ShadowDecision decide_shadow(const ShadowPolicyConfig& policy,
                             const protocol::ShadowStart& request) {
  ShadowDecision d;
  if (!policy.allowed) {
    d.refusal_message = "shadowing is not allowed on this device (shadow.allowed = false)";
    return d;
  }
  const bool browser = request.viewer == protocol::ViewerKind::kBrowser;
  if ((browser && !policy.allow_browser) || (!browser && !policy.allow_external)) {
    d.refusal_message = std::string("this device does not accept ") +
                        std::string(protocol::viewer_kind_name(request.viewer)) +
                        " viewers (shadow.viewers)";
    return d;
  }
  d.allowed = true;
  d.view_only = request.view_only || policy.view_only;
  d.prompt = policy.prompt_user;
  d.prompt_timeout = policy.prompt_timeout;
  d.prompt_default_allow = policy.prompt_default_allow;
  return d;
}

namespace {

// XAUTHORITY=... from a NUL-separated environment block.
std::optional<std::string> environ_value(const std::string& block, std::string_view name) {
  std::size_t start = 0;
  while (start < block.size()) {
    std::size_t end = block.find('\0', start);
    if (end == std::string::npos) end = block.size();
    std::string_view entry(block.data() + start, end - start);
    if (entry.size() > name.size() && entry.substr(0, name.size()) == name &&
        entry[name.size()] == '=') {
      return std::string(entry.substr(name.size() + 1));
    }
    start = end + 1;
  }
  return std::nullopt;
}

}  // namespace

std::vector<std::string> xauthority_candidates(const XauthorityQuery& q) {
  std::vector<std::string> out;
  if (q.leader > 0) {
    auto env = read_file(q.root + "/proc/" + std::to_string(q.leader) + "/environ", 256 * 1024);
    if (env.ok()) {
      auto value = environ_value(*env, "XAUTHORITY");
      if (value && !value->empty() && (*value)[0] == '/') out.push_back(*value);
    }
  }
  out.push_back("/run/user/" + std::to_string(q.uid) + "/gdm/Xauthority");
  if (!q.home.empty() && q.home[0] == '/') out.push_back(q.home + "/.Xauthority");
  if (!q.display.empty()) out.push_back("/var/run/lightdm/root/" + q.display);
  return out;
}

std::vector<std::string> find_xauthority(const XauthorityQuery& q) {
  std::vector<std::string> out;
  for (const auto& path : xauthority_candidates(q)) {
    struct stat st {};
    if (::stat((q.root + path).c_str(), &st) == 0) {
      if (!S_ISREG(st.st_mode)) continue;
      out.push_back(path);
      break;
    }
    if (errno == EACCES) out.push_back(path);
  }
  return out;
}

std::string helper_path(const std::string& configured, const std::string& name,
                        const std::string& self_exe) {
  if (!configured.empty()) return configured;
  const auto slash = self_exe.rfind('/');
  if (slash != std::string::npos) {
    const std::string beside = self_exe.substr(0, slash + 1) + name;
    if (::access(beside.c_str(), X_OK) == 0) return beside;
  }
  return "/usr/libexec/tether/" + name;
}

std::vector<std::string> vnc_argv(const VncLaunch& launch, const ShadowTarget& t) {
  std::vector<std::string> argv = {launch.path, "--fd", std::to_string(launch.fd), "--display",
                                   t.display};
  for (const auto& file : t.xauthority) argv.insert(argv.end(), {"--xauthority", file});
  if (launch.view_only) argv.emplace_back("--view-only");
  if (!launch.monitor.empty()) argv.insert(argv.end(), {"--monitor", launch.monitor});
  if (!launch.desktop_name.empty()) {
    argv.insert(argv.end(), {"--desktop-name", launch.desktop_name});
  }
  return argv;
}

namespace {

std::vector<std::string> ui_common(const std::string& ui_path, const char* mode,
                                   const ShadowTarget& t, const std::string& admin) {
  std::vector<std::string> argv = {ui_path, mode, "--display", t.display};
  for (const auto& file : t.xauthority) argv.insert(argv.end(), {"--xauthority", file});
  argv.insert(argv.end(), {"--admin", admin});
  return argv;
}

}  // namespace

std::vector<std::string> prompt_argv(const std::string& ui_path, const ShadowTarget& t,
                                     const std::string& admin, std::chrono::seconds timeout,
                                     bool default_allow, bool view_only) {
  auto argv = ui_common(ui_path, "prompt", t, admin);
  argv.insert(argv.end(), {"--timeout", std::to_string(std::max<std::int64_t>(1, timeout.count())),
                           "--default", default_allow ? "allow" : "deny"});
  if (view_only) argv.emplace_back("--view-only");
  return argv;
}

std::vector<std::string> indicator_argv(const std::string& ui_path, const ShadowTarget& t,
                                        const std::string& admin, bool view_only) {
  auto argv = ui_common(ui_path, "indicator", t, admin);
  if (view_only) argv.emplace_back("--view-only");
  return argv;
}

std::vector<std::string> child_environment(const ShadowTarget& t) {
  std::vector<std::string> env = {"DISPLAY=" + t.display};
  if (t.xauthority.size() == 1) env.push_back("XAUTHORITY=" + t.xauthority.front());
  if (!t.home.empty()) env.push_back("HOME=" + t.home);
  if (!t.user.empty()) {
    env.push_back("USER=" + t.user);
    env.push_back("LOGNAME=" + t.user);
  }
  env.emplace_back("PATH=/usr/local/bin:/usr/bin:/bin");
  return env;
}

}  // namespace tether::agent
