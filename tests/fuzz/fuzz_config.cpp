// Configuration files as the daemons load them: the first byte picks whose (tether-agent,
// tether-server, tether-gateway), the rest is written to a file that is loaded the way the
// daemon does at start (-c FILE: common/Config and inih, then the daemon's typed view). A
// file either loads or is refused with an error; whatever loads holds only values that pass
// their own validation again, and an agent configuration survives being rendered as a
// drop-in (what the agent does with the server's settings) and read back unchanged.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "agent/AgentConfig.h"
#include "agent/AgentSettings.h"
#include "agent/DiscoveryPolicy.h"
#include "agent/EndpointList.h"
#include "agent/ShadowPolicy.h"
#include "common/Log.h"
#include "server/GatewayConfig.h"
#include "server/ServerConfig.h"

using namespace tether;

namespace {

struct Scratch {
  Scratch() {
    log::set_level(log::Level::kError);
    std::string tmpl = (std::filesystem::temp_directory_path() / "tether-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    dir = tmpl;
    file = dir + "/fuzz.conf";
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string dir;
  std::string file;
};

void write_all(const std::string& path, const std::uint8_t* data, std::size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n <= 0) std::abort();
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  ::close(fd);
}

// Every value a loaded configuration holds is one its spec accepts, in normal form.
void check_values(const Config& config) {
  for (const auto& spec : config.schema()) {
    auto again = validate_setting(spec, config.string(spec.key));
    if (!again.ok() || *again != config.string(spec.key)) std::abort();
  }
}

void load_agent(const Scratch& scratch) {
  agent::ConfigLocation location;
  location.main_file = scratch.file;
  location.main_file_required = true;
  auto config = agent::load_agent_config(location);
  if (!config.ok()) return;
  check_values(*config);
  // What the agent derives from it at start.
  (void)agent::shadow_policy_from_config(*config);
  (void)agent::describe_settings(location, *config);
  const std::string& url = config->string("server.url");
  (void)agent::EndpointList::parse(url.empty() ? "wss://enrolled.example:8443" : url,
                                   config->string("server.fallback_urls"));
  (void)agent::parse_ipv4_cidr_list(config->string("discovery.management_networks"));
  // Rendered as the server's drop-in and read back: the same values.
  std::map<std::string, std::string> values;
  for (const auto& spec : config->schema()) values[spec.key] = config->string(spec.key);
  Config reread(agent::agent_config_schema());
  if (!reread.apply_ini(agent::render_dropin(values), "dropin").ok()) std::abort();
  for (const auto& [key, value] : values) {
    if (reread.string(key) != value) std::abort();
  }
}

template <typename Load>
void load_daemon(const Scratch& scratch, const std::vector<OptionSpec>& options, Load load) {
  const std::string state_dir = scratch.dir + "/state";
  const char* argv[] = {"daemon", "-c", scratch.file.c_str(), "--state-dir", state_dir.c_str()};
  auto args = parse_command_line(5, argv, options);
  if (!args.ok()) std::abort();
  (void)load(*args);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Scratch scratch;
  if (size == 0) return 0;
  write_all(scratch.file, data + 1, size - 1);
  switch (data[0] % 3) {
    case 0: load_agent(scratch); break;
    case 1:
      load_daemon(scratch, server::server_command_line_options(),
                  [](const ParsedArgs& args) { return server::load_server_settings(args); });
      break;
    default:
      load_daemon(scratch, server::gateway_command_line_options(),
                  [](const ParsedArgs& args) { return server::load_gateway_settings(args); });
      break;
  }
  return 0;
}
