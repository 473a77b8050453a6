#include "server/CtlUsers.h"

#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "common/FileIo.h"
#include "platform/Pki.h"
#include "server/CtlOutput.h"

namespace tether::server {
namespace {

using json = nlohmann::json;

// The password in a file: its first line, without the line end.
Result<std::string> password_from_file(const std::string& path) {
  TETHER_ASSIGN_OR_RETURN(std::string text, read_file(path, 64 * 1024));
  const auto end = text.find_first_of("\r\n");
  if (end != std::string::npos) text.resize(end);
  if (text.empty()) return make_error(Errc::kBadValue, path + " holds no password");
  return text;
}

int user_add(const CtlClient& client, const ParsedArgs& args, const std::string& name) {
  json body = {{"name", name}};
  if (auto file = args.value("password-file")) {
    auto password = password_from_file(*file);
    if (!password.ok()) return fail("--password-file: " + password.error().message);
    body["password"] = *password;
  }
  auto created = client.call("POST", "/api/v1/users", body);
  if (!created.ok()) return fail(created.error().message);
  if (args.has("json")) {
    print_json(*created);
    return 0;
  }
  if (auto it = created->find("password"); it != created->end() && it->is_string()) {
    // Made by the server and shown this once: only its hash is kept.
    std::printf("%s\n", it->get<std::string>().c_str());
    (void)std::fprintf(stderr, "tetherctl: user %s added; the password above is shown only now\n",
                       name.c_str());
  } else {
    (void)std::fprintf(stderr, "tetherctl: user %s added\n", name.c_str());
  }
  return 0;
}

int user_list(const CtlClient& client, const ParsedArgs& args) {
  auto list = client.call("GET", "/api/v1/users");
  if (!list.ok()) return fail(list.error().message);
  if (args.has("json")) {
    print_json(*list);
    return 0;
  }
  std::printf("%-32s  %s\n", "NAME", "CREATED");
  for (const auto& user : (*list)["users"]) {
    const std::string name = user.value("name", "");
    const auto created = user.value("created_at", std::int64_t{0});
    std::printf("%-32s  %s\n", name.c_str(),
                pki::format_utc(static_cast<std::time_t>(created)).c_str());
  }
  return 0;
}

}  // namespace

int run_user_command(const CtlClient& client, const ParsedArgs& args) {
  const auto& pos = args.positional();
  const std::string action = pos.size() > 1 ? pos[1] : "";
  if (action == "list" && pos.size() == 2) return user_list(client, args);
  if ((action == "add" || action == "remove") && pos.size() == 3) {
    if (action == "add") return user_add(client, args, pos[2]);
    auto removed = client.call("DELETE", "/api/v1/users/" + pos[2]);
    if (!removed.ok()) return fail(removed.error().message);
    if (args.has("json")) {
      print_json(*removed);
    } else {
      std::printf("removed user %s\n", pos[2].c_str());
    }
    return 0;
  }
  return fail(
      "usage: tetherctl user add NAME [--password-file FILE] | user list [--json] | "
      "user remove NAME",
      kExitUsage);
}

}  // namespace tether::server
