// tether-logind-probe: drives platform::Logind against whatever logind the system bus
// (DBUS_SYSTEM_BUS_ADDRESS) has, with a plain poll() loop, and prints one JSON object.
// tests/integration/test_logind.py runs it against python3-dbusmock's logind.
//
//   tether-logind-probe [--call-timeout-ms N] [--deadline-ms N] COMMAND
//     reboot | poweroff     one call: {"ok":true} or {"ok":false,"errc":...,"error":...}
//     session               {"ok":true,"session":null|{...}}
//     destroy-in-flight     reboot + session query sent, Logind destroyed before their
//                           replies are read: {"ok":true,"callbacks":0,"in_flight":N}
//     destroy-in-callback   session query, reboot and poweroff in flight; the first callback
//                           destroys the Logind: {"ok":true,"callbacks":1,...}
//     callback-throws       reboot whose callback throws: process() reports it
//
// Exit status: 0 when the command ran to its end (whatever logind answered), 1 on a usage
// error, 2 when the deadline passed first.
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/Result.h"
#include "platform/Logind.h"

namespace {

using tether::Status;
using tether::platform::GraphicalSession;
using tether::platform::Logind;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

json error_json(const tether::Error& e) {
  return {{"ok", false}, {"errc", std::string(tether::errc_name(e.code))}, {"error", e.message}};
}

json session_json(const std::optional<GraphicalSession>& s) {
  if (!s) return nullptr;
  return {{"id", s->id},          {"object_path", s->object_path}, {"uid", s->uid},
          {"user", s->user},      {"display", s->display},         {"seat", s->seat},
          {"type", s->type},      {"class", s->session_class},     {"leader", s->leader},
          {"service", s->service}};
}

// Runs the loop until `finished` says so, the Logind is gone, or the deadline passes (false).
// Errors from process() are collected: the connection going away is an answer too.
bool pump(std::unique_ptr<Logind>& logind, Clock::time_point deadline,
          const std::function<bool()>& finished, std::vector<std::string>& process_errors) {
  while (!finished()) {
    if (!logind) return true;
    const auto now = Clock::now();
    if (now >= deadline) return false;
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    if (auto t = logind->timeout()) {
      wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(*t));
    }
    pollfd p{.fd = logind->fd(), .events = logind->poll_events(), .revents = 0};
    // With no fd left (connection gone) poll() just sleeps; timeouts still run process().
    ::poll(&p, p.fd >= 0 ? 1 : 0, static_cast<int>(wait.count()));
    const Status s = logind->process();
    if (!s.ok()) {
      process_errors.push_back(std::string(tether::errc_name(s.error().code)) + ": " +
                               s.error().message);
      if (!logind || logind->fd() < 0) {
        // Lost for good; callbacks have all run by now.
        if (finished()) return true;
      }
    }
  }
  return true;
}

// Makes sure the bus handshake is done, so later calls are written at once.
bool warm_up(std::unique_ptr<Logind>& logind, Clock::time_point deadline,
             std::vector<std::string>& errors) {
  bool done = false;
  logind->find_graphical_session(
      [&done](const tether::Result<std::optional<GraphicalSession>>&) { done = true; });
  return pump(
      logind, deadline, [&] { return done; }, errors);
}

int usage() {
  std::cerr << "usage: tether-logind-probe [--call-timeout-ms N] [--deadline-ms N] "
               "reboot|poweroff|session|destroy-in-flight|destroy-in-callback|callback-throws\n";
  return 1;
}

int run(int argc, char** argv) {
  Logind::Options options;
  std::chrono::milliseconds deadline_ms{30000};
  std::string command;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if ((arg == "--call-timeout-ms" || arg == "--deadline-ms") && i + 1 < argc) {
      const auto value = std::chrono::milliseconds(std::strtoll(argv[++i], nullptr, 10));
      if (arg == "--call-timeout-ms") {
        options.call_timeout = value;
      } else {
        deadline_ms = value;
      }
    } else if (command.empty() && !arg.starts_with("-")) {
      command = arg;
    } else {
      return usage();
    }
  }
  if (command.empty()) return usage();

  const auto started = Clock::now();
  const auto deadline = started + deadline_ms;
  json out;
  std::vector<std::string> process_errors;
  bool in_time = true;

  auto connected = Logind::connect(options);
  if (!connected.ok()) {
    out = error_json(connected.error());
    out["stage"] = "connect";
    std::cout << out.dump() << "\n";
    return 0;
  }
  std::unique_ptr<Logind> logind = std::move(connected).value();

  if (command == "reboot" || command == "poweroff") {
    std::optional<Status> result;
    auto done = [&result](Status s) { result = std::move(s); };
    if (command == "reboot") {
      logind->reboot(done);
    } else {
      logind->power_off(done);
    }
    in_time = pump(
        logind, deadline, [&] { return result.has_value(); }, process_errors);
    if (result) out = result->ok() ? json{{"ok", true}} : error_json(result->error());
  } else if (command == "session") {
    std::optional<tether::Result<std::optional<GraphicalSession>>> result;
    logind->find_graphical_session([&result](tether::Result<std::optional<GraphicalSession>> r) {
      result.emplace(std::move(r));
    });
    in_time = pump(
        logind, deadline, [&] { return result.has_value(); }, process_errors);
    if (result) {
      out = result->ok() ? json{{"ok", true}, {"session", session_json(result->value())}}
                         : error_json(result->error());
    }
  } else if (command == "destroy-in-flight") {
    in_time = warm_up(logind, deadline, process_errors);
    int callbacks = 0;
    logind->reboot([&callbacks](const Status&) { ++callbacks; });
    logind->find_graphical_session(
        [&callbacks](const tether::Result<std::optional<GraphicalSession>>&) { ++callbacks; });
    // Write whatever is still queued, without reading any reply.
    for (int i = 0; i < 100 && (logind->poll_events() & POLLOUT) != 0; ++i) {
      pollfd p{.fd = logind->fd(), .events = POLLOUT, .revents = 0};
      ::poll(&p, 1, 10);
      (void)logind->process();
    }
    const std::size_t in_flight = logind->calls_in_flight();
    // Let the replies arrive in our socket buffer: they must never reach a callback.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    logind.reset();
    out = {{"ok", callbacks == 0}, {"callbacks", callbacks}, {"in_flight", in_flight}};
  } else if (command == "destroy-in-callback") {
    in_time = warm_up(logind, deadline, process_errors);
    int callbacks = 0;
    std::size_t in_flight_at_destroy = 0;
    auto destroy = [&] {
      ++callbacks;
      if (logind) {
        in_flight_at_destroy = logind->calls_in_flight();
        logind.reset();  // from inside Logind::process()
      }
    };
    logind->find_graphical_session(
        [&](const tether::Result<std::optional<GraphicalSession>>&) { destroy(); });
    logind->reboot([&](const Status&) { destroy(); });
    logind->power_off([&](const Status&) { destroy(); });
    in_time = pump(
                  logind, deadline, [&] { return !logind; }, process_errors) &&
              in_time;
    // Whatever else was coming must not arrive now.
    out = {{"ok", callbacks == 1},
           {"callbacks", callbacks},
           {"in_flight_at_destroy", in_flight_at_destroy}};
  } else if (command == "callback-throws") {
    bool called = false;
    logind->reboot([&called](const Status&) {
      called = true;
      throw std::runtime_error("thrown by the test");
    });
    std::optional<std::string> reported;
    const auto start_errors = process_errors.size();
    in_time = pump(
        logind, deadline, [&] { return called; }, process_errors);
    if (process_errors.size() > start_errors) reported = process_errors.back();
    out = {{"ok", called && reported.has_value()},
           {"called", called},
           {"process_error", reported ? json(*reported) : json(nullptr)}};
    process_errors.resize(start_errors);
  } else {
    return usage();
  }

  if (!in_time) {
    out["ok"] = false;
    out["timed_out"] = true;
  }
  if (!process_errors.empty()) out["process_errors"] = process_errors;
  out["elapsed_ms"] =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
  std::cout << out.dump() << "\n";
  return in_time ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "tether-logind-probe: " << e.what() << "\n";
    return 1;
  }
}
