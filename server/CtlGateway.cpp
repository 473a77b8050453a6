#include "server/CtlGateway.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "common/Duration.h"
#include "platform/Pki.h"
#include "server/CtlOutput.h"

namespace tether::server {
namespace {

using json = nlohmann::json;

int gateway_add(const CtlClient& client, const ParsedArgs& args, const std::string& name) {
  const auto url = args.value("url");
  if (!url) return fail("gateway add needs --url wss://HOST:PORT", kExitUsage);
  json body = {{"name", name}, {"url", *url}};
  if (auto ttl = args.value("ttl")) {
    auto d = parse_duration(*ttl);
    if (!d.ok()) return fail("--ttl: " + d.error().message, kExitUsage);
    const auto seconds = (d->count() + 999) / 1000;
    if (seconds < 1) return fail("--ttl must be at least 1s", kExitUsage);
    body["ttl_s"] = seconds;
  }
  auto created = client.call("POST", "/api/v1/gateways", body);
  if (!created.ok()) return fail(created.error().message);
  if (args.has("json")) {
    print_json(*created);
    return 0;
  }
  std::printf("%s\n", text(*created, "token").c_str());
  (void)std::fprintf(stderr,
                     "tetherctl: gateway %s added (%s); its join token (above) expires %s: run "
                     "tether-gateway --join TOKEN on it\n",
                     name.c_str(), text(*created, "url").c_str(),
                     when(*created, "expires_at").c_str());
  return 0;
}

int gateway_list(const CtlClient& client, const ParsedArgs& args) {
  auto list = client.call("GET", "/api/v1/gateways");
  if (!list.ok()) return fail(list.error().message);
  if (args.has("json")) {
    print_json(*list);
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"NAME", "URL", "LINK", "DEVICES", "JOINED"}};
  const auto gateways = list->find("gateways");
  if (gateways != list->end() && gateways->is_array()) {
    for (const auto& g : *gateways) {
      rows.push_back({text(g, "name"), text(g, "url"), text(g, "link"), text(g, "devices"),
                      when(g, "joined_at")});
    }
  }
  std::vector<std::size_t> widths(rows.front().size(), 0);
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

}  // namespace

int run_gateway_command(const CtlClient& client, const ParsedArgs& args) {
  const auto& pos = args.positional();
  const std::string action = pos.size() > 1 ? pos[1] : "";
  if (action == "list" && pos.size() == 2) return gateway_list(client, args);
  if (action == "add" && pos.size() == 3) return gateway_add(client, args, pos[2]);
  if (action == "remove" && pos.size() == 3) {
    auto removed = client.call("DELETE", "/api/v1/gateways/" + pos[2]);
    if (!removed.ok()) return fail(removed.error().message);
    if (args.has("json")) {
      print_json(*removed);
    } else {
      std::printf("removed gateway %s\n", pos[2].c_str());
    }
    return 0;
  }
  return fail(
      "usage: tetherctl gateway add NAME --url wss://HOST:PORT [--ttl DURATION] [--json] | "
      "gateway list [--json] | gateway remove NAME",
      kExitUsage);
}

}  // namespace tether::server
