// A client of systemd-logind (org.freedesktop.login1) on the system bus, over sd-bus: reboot,
// power off, and finding the active graphical session that shadowing attaches to.
//
// Everything is asynchronous so that it runs on the agent's single event loop: the loop
// watches fd() for poll_events(), wakes after timeout(), and calls process(). No method
// blocks on the bus except connect() (a local socket connect).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/Result.h"

struct sd_bus;
struct sd_bus_message;
struct sd_bus_slot;

namespace tether::platform {

// What logind says about one session (org.freedesktop.login1.Session properties, with the
// ListSessions row as a fallback for the user and seat).
struct LogindSession {
  std::string id;
  std::string object_path;
  std::uint32_t uid = 0;
  std::string user;           // Name
  std::string seat;           // Seat's id; empty for sessions without a seat (ssh)
  std::string type;           // x11, wayland, tty, mir, web, unspecified
  std::string session_class;  // user, greeter, lock-screen, background, ...
  std::string state;          // online, active, closing
  bool active = false;
  bool remote = false;
  std::string display;  // X11 display (":0") for x11 sessions; often empty for wayland
  std::string service;  // PAM service: gdm-password, lightdm, sshd, login
  std::string tty;
  std::uint32_t leader = 0;  // pid of the session leader, 0 when unknown
};

// "The" graphical session of this device, the one a shadowing session shows.
struct GraphicalSession {
  std::string id;
  std::string object_path;
  uid_t uid = 0;
  std::string user;
  std::string display;
  std::string seat;
  std::string type;
  std::string session_class;
  pid_t leader = 0;
  std::string service;
};

// The rules (docs/architecture.md, "Logind and systemd"): a candidate is on seat "seat0", is
// active (Active, or State "active"), is local (not Remote), has Type "x11" or "wayland" and
// Class "user" or "greeter". Among candidates a "user" session beats a "greeter" (the login
// screen is shown only when nobody is logged in), then "x11" beats "wayland" (the VNC server
// only captures X11), then the earlier one in logind's list wins. Nothing matching: nullopt.
[[nodiscard]] std::optional<GraphicalSession> pick_graphical_session(
    std::span<const LogindSession> sessions);

class Logind {
 public:
  struct Options {
    // How long a method call may go unanswered before it fails with kUnavailable
    // (org.freedesktop.DBus.Error.NoReply). logind answers Reboot only after polkit has
    // decided, which can take a while on a loaded machine.
    std::chrono::microseconds call_timeout = std::chrono::seconds(25);
  };

  // At most this many sessions of ListSessions are looked at; the rest are ignored.
  static constexpr std::size_t kMaxSessions = 64;

  using Done = std::function<void(Status)>;
  using SessionDone = std::function<void(Result<std::optional<GraphicalSession>>)>;

  // Connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS when set, which tests use for a
  // private bus). kUnavailable when there is no bus to connect to. The bus handshake itself
  // completes asynchronously in process().
  [[nodiscard]] static Result<std::unique_ptr<Logind>> connect(Options options);
  [[nodiscard]] static Result<std::unique_ptr<Logind>> connect() { return connect(Options{}); }

  // Destroying the object cancels every call in flight: their callbacks are destroyed
  // WITHOUT being called (so they may capture objects that die with the owner), and calls
  // still queued in the connection are dropped, not flushed. The connection is closed
  // without blocking. Destroying it from inside one of its own callbacks is allowed.
  ~Logind();
  Logind(const Logind&) = delete;
  Logind& operator=(const Logind&) = delete;

  // Loop integration. After any call into this object (a request or process()), re-read
  // poll_events() and timeout(): both change as messages are queued and answered.
  // The file descriptor to watch, or -1 once the connection is gone.
  [[nodiscard]] int fd() const;
  // POLLIN and/or POLLOUT; 0 once the connection is gone.
  [[nodiscard]] short poll_events() const;
  // When process() must run even if fd() stays quiet (a call's timeout, queued work);
  // 0 means "now", nullopt "no deadline".
  [[nodiscard]] std::optional<std::chrono::microseconds> timeout() const;
  // Reads, writes and dispatches what is ready, running the callbacks of finished calls. Does
  // a bounded amount of work per call; when more is left timeout() is 0. kUnavailable once
  // the connection to the bus is lost (every call in flight has then been completed with
  // kUnavailable). kInternal when a callback threw (the exception is not propagated).
  // Must not be called from inside one of this object's callbacks.
  [[nodiscard]] Status process();

  // org.freedesktop.login1.Manager.Reboot(false) / PowerOff(false): never interactive, so
  // polkit decides without asking anyone. `done` runs exactly once from process() (never
  // from inside this call) unless the object is destroyed first: ok when logind accepted;
  // otherwise an error whose message starts with the D-Bus error name
  // ("org.freedesktop.DBus.Error.AccessDenied: ..."), with code kPermissionDenied (access
  // denied, interactive authorization required), kUnavailable (no logind on the bus, no
  // answer within the call timeout, connection lost) or kInternal (anything else).
  void reboot(Done done);
  void power_off(Done done);

  // Finds the graphical session by the rules of pick_graphical_session: ListSessions, then
  // the properties of each (at most kMaxSessions) in parallel. No matching session is
  // nullopt, not an error. A session whose properties cannot be read (it ended meanwhile) is
  // skipped; the query fails only if ListSessions fails or no session could be read at all.
  // Same callback guarantees as reboot().
  void find_graphical_session(SessionDone done);

  // D-Bus calls this object is waiting for (for tests and diagnostics).
  [[nodiscard]] std::size_t calls_in_flight() const noexcept { return calls_.size(); }

 private:
  struct BusDeleter {
    void operator()(sd_bus* bus) const noexcept;
  };
  struct SlotDeleter {
    void operator()(sd_bus_slot* slot) const noexcept;
  };
  using BusPtr = std::unique_ptr<sd_bus, BusDeleter>;
  using SlotPtr = std::unique_ptr<sd_bus_slot, SlotDeleter>;
  // A reply handler gets the method return, or the call's failure as an Error.
  using ReplyHandler = std::function<void(Result<sd_bus_message*>)>;
  struct Call {
    Logind* owner = nullptr;
    std::uint64_t id = 0;
    SlotPtr slot;
    ReplyHandler on_reply;
  };
  struct SessionQuery;

  Logind(BusPtr bus, Options options);

  // Sends a method call to logind; `on_reply` runs once from process(). A call that cannot
  // even be queued is completed from process() too, so callers never see re-entrancy.
  void call(const char* path, const char* interface, const char* member,
            const std::function<int(sd_bus_message*)>& append_args, ReplyHandler on_reply);
  void power_action(const char* member, Done done);
  void on_sessions_listed(const std::shared_ptr<SessionQuery>& query, sd_bus_message* reply);
  void on_session_read(const std::shared_ptr<SessionQuery>& query, std::size_t index,
                       Result<sd_bus_message*> reply);
  // Holds the sd-bus reply callback (a C function pointer needs the C types of sd-bus.h,
  // which stay out of this header).
  struct Dispatch;

  BusPtr bus_;
  Options options_;
  std::map<std::uint64_t, std::unique_ptr<Call>> calls_;
  std::uint64_t next_call_id_ = 1;
  // Completions of calls that failed before reaching the bus, run by the next process().
  std::vector<std::function<void()>> deferred_;
  // Set when a callback threw; process() reports it.
  std::optional<std::string> callback_failure_;
  // Expires when the object is destroyed: process() and the dispatch trampoline check it
  // after running user callbacks, which may destroy this object.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace tether::platform
