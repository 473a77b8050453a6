#include "agent/AgentCommands.h"

#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>

#include "agent/AgentConfig.h"
#include "agent/AgentDaemon.h"
#include "agent/AgentDiscovery.h"
#include "agent/AgentSettings.h"
#include "agent/DeviceIdentity.h"
#include "agent/Enroller.h"
#include "agent/StatusFile.h"
#include "common/CommandLine.h"
#include "common/FileIo.h"
#include "common/Log.h"
#include "common/Version.h"
#include "platform/Pki.h"
#include "protocol/LimitedJsonParser.h"

namespace tether::agent {
namespace {

using json = nlohmann::json;

const std::vector<OptionSpec>& option_specs() {
  static const std::vector<OptionSpec> specs = {
      {"config", 'c', true, "FILE", "configuration file (default /etc/tether/agent.conf)"},
      {"state-dir", 0, true, "DIR", "state directory (default /var/lib/tether-agent)"},
      {"set", 0, true, "SECTION.KEY=VALUE", "override a setting (repeatable)"},
      {"token", 0, true, "TOKEN", "register: the enrollment token from tetherctl"},
      {"force", 0, false, "", "register: enroll again although already enrolled"},
      {"json", 0, false, "", "status: print JSON"},
      {"help", 'h', false, "", "show this help"},
      {"version", 0, false, "", "show the version"},
  };
  return specs;
}

void print_help() {
  std::cout << "Usage: tether-agent [OPTIONS] [COMMAND]\n\n"
               "Commands:\n"
               "  run                        run the agent service (the default)\n"
               "  register --token TOKEN     enroll this device with a server (once)\n"
               "  status [--json]            identity, enrollment and connection state\n"
               "  cert-info                  the device certificate, briefly\n\n"
               "Options (before or after the command):\n"
            << format_options_help(option_specs());
}

std::string ago_or_in(std::int64_t t) {
  const std::int64_t d = t - static_cast<std::int64_t>(std::time(nullptr));
  const std::int64_t a = d < 0 ? -d : d;
  std::string amount = a < 120      ? std::to_string(a) + " s"
                       : a < 7200   ? std::to_string(a / 60) + " min"
                       : a < 172800 ? std::to_string(a / 3600) + " h"
                                    : std::to_string(a / 86400) + " days";
  return d < 0 ? amount + " ago" : "in " + amount;
}

// The packaged agent runs as the system user tether-agent and owns its state directory; an
// administrator runs `tether-agent register` or `status` as root. Root then becomes that
// owner for the command, so the files it writes are the agent's and the checks that the
// agent's keys are its own hold (without this, register would leave root-owned files the
// agent cannot read).
bool become_state_owner(const StatePaths& paths) {
  struct stat st {};
  if (::geteuid() != 0 || ::stat(paths.dir.c_str(), &st) != 0 || st.st_uid == 0) return true;
  if (::setgroups(0, nullptr) != 0 || ::setgid(st.st_gid) != 0 || ::setuid(st.st_uid) != 0) {
    std::cerr << "tether-agent: cannot become uid " << st.st_uid << ", the owner of " << paths.dir
              << ": " << std::strerror(errno) << "\n";
    return false;
  }
  return true;
}

// Kicks a running agent so it notices a new enrollment at once.
void notify_running_agent(const StatePaths& paths) {
  auto status = read_status_file(paths);
  if (status.ok() && *status && agent_process_alive((*status)->pid)) {
    ::kill((*status)->pid, SIGHUP);
  }
}

int cmd_register(const StatePaths& paths, const ParsedArgs& args) {
  const auto token = args.value("token");
  if (!token) {
    std::cerr << "tether-agent register: --token TOKEN is required\n";
    return 2;
  }
  auto outcome = enroll(paths, EnrollOptions{*token, args.has("force")});
  if (!outcome.ok()) {
    std::cerr << "tether-agent register: " << outcome.error().message << "\n";
    return 1;
  }
  std::cerr << "enrolled with " << outcome->server_url << "\n";
  std::cout << outcome->device_id << "\n";
  notify_running_agent(paths);
  return 0;
}

int cmd_status(const StatePaths& paths, const ParsedArgs& args) {
  json out = json::object();
  out["state_dir"] = paths.dir;
  auto identity = DeviceIdentity::load(paths);
  if (identity.ok()) {
    out["device_id"] = identity->device_id();
    auto info = pki::describe(identity->certificate());
    if (info.ok()) {
      out["certificate"] = {
          {"subject", info->subject},        {"issuer", info->issuer},
          {"serial", info->serial},          {"not_before", info->not_before},
          {"not_after", info->not_after},    {"fingerprint_sha256", info->fingerprint},
          {"self_signed", info->self_signed}};
    }
  } else if (identity.error().code == Errc::kNotFound && !identity.error().message.empty() &&
             identity.error().message.find("no device identity") != std::string::npos) {
    out["device_id"] = nullptr;
  } else {
    out["identity_error"] = identity.error().message;
  }
  auto enrollment = load_enrollment(paths);
  if (enrollment.ok() && *enrollment) {
    out["enrolled"] = true;
    out["server_url"] = (*enrollment)->server_url;
    out["enrolled_at"] = (*enrollment)->enrolled_at;
  } else {
    out["enrolled"] = false;
    if (!enrollment.ok()) out["enrollment_error"] = enrollment.error().message;
  }
  auto trust = load_trust(paths);
  if (trust.ok()) out["trusted_ca_fingerprints"] = *trust;
  auto status = read_status_file(paths);
  const bool running = status.ok() && *status && agent_process_alive((*status)->pid);
  out["running"] = running;
  if (status.ok() && *status) {
    const auto& s = **status;
    out["connection"] = {{"state", running ? channel_state_name(s.channel.state) : "stopped"},
                         {"endpoint", s.channel.endpoint},
                         {"endpoint_index", s.channel.endpoint_index},
                         {"endpoints", s.channel.endpoints},
                         {"via_gateway", running && s.channel.via_gateway},
                         {"server_reachable", running && s.channel.server_reachable},
                         {"since", s.channel.since},
                         {"last_error", s.channel.last_error},
                         {"next_attempt", s.channel.next_attempt},
                         {"failures", s.channel.failures}};
    if (running) out["pid"] = s.pid;
    if (!s.device_name.empty()) out["device_name"] = s.device_name;
    if (s.next_renewal != 0) out["next_renewal"] = s.next_renewal;
    if (running) out["shadow"] = s.shadow.empty() ? json(nullptr) : json(s.shadow);
    if (!s.last_shadow.empty()) out["last_shadow"] = s.last_shadow;
  }
  // The discovery responder's counters (discovery.json, written by the running agent).
  if (auto text = read_file(discovery_stats_path(paths), 64 * 1024, true); text.ok()) {
    auto doc = protocol::parse_limited_json(*text, protocol::JsonLimits{});
    if (doc.ok() && doc->is_object()) out["discovery"] = *doc;
  }

  if (args.has("json")) {
    std::cout << out.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
    return identity.ok() ? 0 : 1;
  }
  auto line = [](const std::string& label, const std::string& value) {
    std::string l = label + ":";
    l.resize(14, ' ');
    std::cout << l << value << "\n";
  };
  line("Device", out["device_id"].is_string() ? out["device_id"].get<std::string>()
                                              : std::string("(no identity yet)"));
  if (out.contains("identity_error"))
    line("Identity", "ERROR: " + out["identity_error"].get<std::string>());
  if (out.contains("device_name")) line("Name", out["device_name"].get<std::string>());
  line("State dir", paths.dir);
  if (out["enrolled"].get<bool>()) {
    line("Enrolled", "yes, with " + out["server_url"].get<std::string>() + " on " +
                         pki::format_utc(out["enrolled_at"].get<std::int64_t>()));
  } else {
    line("Enrolled", out.contains("enrollment_error")
                         ? "ERROR: " + out["enrollment_error"].get<std::string>()
                         : std::string("no (run tether-agent register --token TOKEN)"));
  }
  if (!running) {
    line("Agent", "not running");
  } else if (!out["enrolled"].get<bool>()) {
    line("Agent",
         "running (pid " + std::to_string(out["pid"].get<int>()) + "), waiting for enrollment");
  } else {
    const auto& c = out["connection"];
    const std::string state = c["state"].get<std::string>();
    std::string text;
    if (state == "connected" && c["via_gateway"].get<bool>() &&
        !c["server_reachable"].get<bool>()) {
      text = "connected to the gateway " + c["endpoint"].get<std::string>() + " since " +
             pki::format_utc(c["since"].get<std::int64_t>()) +
             "; the server is unavailable behind it";
    } else if (state == "connected") {
      text = "connected to " + c["endpoint"].get<std::string>() +
             (c["via_gateway"].get<bool>() ? " (a gateway)" : "") + " since " +
             pki::format_utc(c["since"].get<std::int64_t>());
    } else if (state == "waiting") {
      text = "waiting to reconnect to " + c["endpoint"].get<std::string>() + " (" +
             ago_or_in(c["next_attempt"].get<std::int64_t>()) + ")";
    } else if (state == "connecting") {
      text = "connecting to " + c["endpoint"].get<std::string>();
    } else {
      text = state;
    }
    line("Connection", text);
    const auto& endpoints = c["endpoints"];
    if (endpoints.size() > 1) {
      const auto index = c["endpoint_index"].get<std::size_t>();
      std::string list;
      for (std::size_t i = 0; i < endpoints.size(); ++i) {
        list += (i == 0 ? "" : ", ") + endpoints[i].get<std::string>() + (i == index ? " (*)" : "");
      }
      line("Endpoint", std::to_string(index + 1) + " of " + std::to_string(endpoints.size()) +
                           (index == 0 ? " (preferred)" : " (fallback)"));
      line("Endpoints", list);
    }
    if (!c["last_error"].get<std::string>().empty()) {
      line("Last error", c["last_error"].get<std::string>());
    }
  }
  if (out.contains("shadow")) {
    line("Shadowing", out["shadow"].is_string() ? out["shadow"].get<std::string>() : "no");
  }
  if (out.contains("last_shadow")) line("Last session", out["last_shadow"].get<std::string>());
  if (out.contains("certificate")) {
    const auto& c = out["certificate"];
    line("Certificate",
         c["subject"].get<std::string>() + (c["self_signed"].get<bool>()
                                                ? " (self-signed)"
                                                : ", issued by " + c["issuer"].get<std::string>()));
    line("Valid", pki::format_utc(c["not_before"].get<std::int64_t>()) + " to " +
                      pki::format_utc(c["not_after"].get<std::int64_t>()) + " (expires " +
                      ago_or_in(c["not_after"].get<std::int64_t>()) + ")");
    line("Fingerprint", c["fingerprint_sha256"].get<std::string>());
  }
  if (out.contains("next_renewal")) {
    line("Renewal", pki::format_utc(out["next_renewal"].get<std::int64_t>()));
  }
  if (out.contains("trusted_ca_fingerprints") && !out["trusted_ca_fingerprints"].empty()) {
    std::string cas;
    for (const auto& fp : out["trusted_ca_fingerprints"]) {
      cas += (cas.empty() ? "" : ", ") + fp.get<std::string>().substr(0, 16) + "...";
    }
    line("Trusted CAs", cas);
  }
  return identity.ok() ? 0 : 1;
}

int cmd_cert_info(const StatePaths& paths) {
  auto identity = DeviceIdentity::load(paths);
  if (!identity.ok()) {
    std::cerr << "tether-agent cert-info: " << identity.error().message << "\n";
    return 1;
  }
  auto info = pki::describe(identity->certificate());
  if (!info.ok()) {
    std::cerr << "tether-agent cert-info: " << info.error().message << "\n";
    return 1;
  }
  std::cout << "Certificate:\n"
            << "    Subject: " << info->subject << "\n"
            << "    Issuer: " << info->issuer << (info->self_signed ? " (self-signed)" : "") << "\n"
            << "    Serial Number: " << info->serial << "\n"
            << "    Validity\n"
            << "        Not Before: " << pki::format_utc(info->not_before) << "\n"
            << "        Not After : " << pki::format_utc(info->not_after) << " ("
            << ago_or_in(info->not_after) << ")\n"
            << "    Public Key: " << info->public_key << "\n"
            << "    Device ID (SHA-256 of the public key): " << info->spki_sha256 << "\n";
  if (!info->extended_key_usage.empty()) {
    std::string eku;
    for (const auto& u : info->extended_key_usage) eku += (eku.empty() ? "" : ", ") + u;
    std::cout << "    Extended Key Usage: " << eku << "\n";
  }
  if (!info->subject_alt_names.empty()) {
    std::string san;
    for (const auto& n : info->subject_alt_names) san += (san.empty() ? "" : ", ") + n;
    std::cout << "    Subject Alternative Names: " << san << "\n";
  }
  std::cout << "    SHA-256 Fingerprint: " << info->fingerprint << "\n";
  return 0;
}

}  // namespace

int agent_main(int argc, const char* const* argv) {
  // A peer that hangs up while we write must give an error, not kill the process.
  ::signal(SIGPIPE, SIG_IGN);
  auto args = parse_command_line(argc, argv, option_specs());
  if (!args.ok()) {
    std::cerr << "tether-agent: " << args.error().message << "\n";
    return 2;
  }
  if (args->has("help")) {
    print_help();
    return 0;
  }
  if (args->has("version")) {
    std::cout << "tether-agent " << kVersion << "\n";
    return 0;
  }
  const auto& pos = args->positional();
  const std::string command = pos.empty() ? "run" : pos[0];
  if (pos.size() > 1) {
    std::cerr << "tether-agent: unexpected argument \"" << pos[1] << "\" (try --help)\n";
    return 2;
  }
  if (command != "run" && command != "register" && command != "status" && command != "cert-info") {
    std::cerr << "tether-agent: unknown command \"" << command << "\" (try --help)\n";
    return 2;
  }

  ConfigLocation location;
  location.main_file = args->value("config").value_or(kDefaultConfigFile);
  location.main_file_required = args->has("config");
  location.overrides = args->values("set");
  auto config = load_agent_config(location);
  if (!config.ok()) {
    std::cerr << "tether-agent: " << config.error().message << "\n";
    // Reading the state does not need a valid configuration: say so and go on.
    if (command == "status" || command == "cert-info") {
      const StatePaths paths(args->value("state-dir").value_or(kDefaultStateDir));
      if (!become_state_owner(paths)) return 1;
      return command == "status" ? cmd_status(paths, *args) : cmd_cert_info(paths);
    }
    return 1;
  }
  log::Level level = log::Level::kInfo;
  if (log::parse_level(config->string("log.level"), level)) log::set_level(level);
  const StatePaths paths(args->value("state-dir").value_or(kDefaultStateDir));

  if (command != "run" && !become_state_owner(paths)) return 1;
  if (command == "register") return cmd_register(paths, *args);
  if (command == "status") return cmd_status(paths, *args);
  if (command == "cert-info") return cmd_cert_info(paths);
  route_lws_logging(level == log::Level::kDebug);
  AgentDaemon daemon(location, std::move(config).value(), paths);
  return daemon.run();
}

}  // namespace tether::agent
