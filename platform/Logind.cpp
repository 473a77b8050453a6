#include "platform/Logind.h"

#include <systemd/sd-bus.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <string_view>
#include <system_error>
#include <utility>

namespace tether::platform {
namespace {

constexpr const char* kService = "org.freedesktop.login1";
constexpr const char* kManagerPath = "/org/freedesktop/login1";
constexpr const char* kManagerInterface = "org.freedesktop.login1.Manager";
constexpr const char* kSessionInterface = "org.freedesktop.login1.Session";
constexpr const char* kPropertiesInterface = "org.freedesktop.DBus.Properties";

// sd_bus_process() handles one message per call; this bounds how long one process() keeps
// the loop. Whatever is left makes timeout() 0, so the loop comes straight back.
constexpr int kMaxProcessIterations = 64;

struct MessageDeleter {
  void operator()(sd_bus_message* m) const noexcept { sd_bus_message_unref(m); }
};
using MessagePtr = std::unique_ptr<sd_bus_message, MessageDeleter>;

std::string errno_text(int negative_errno) {
  return std::error_code(-negative_errno, std::system_category()).message();
}

bool is_disconnect_errno(int err) {
  switch (err) {
    case ECONNRESET:
    case ENOTCONN:
    case ECONNREFUSED:
    case ECONNABORTED:
    case EPIPE:
    case ESHUTDOWN:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENOENT:  // no socket at the bus address
      return true;
    default: return false;
  }
}

// Maps a D-Bus error to our codes. Names are what logind, polkit and the bus daemon send;
// "System.Error.E…" names are sd-bus's own errors made from an errno (a lost connection).
Error bus_error(const sd_bus_error* e) {
  const std::string name =
      (e != nullptr && e->name != nullptr) ? e->name : "org.freedesktop.DBus.Error.Failed";
  const std::string message = (e != nullptr && e->message != nullptr) ? e->message : "";
  std::string text = message.empty() ? name : name + ": " + message;

  static constexpr std::string_view kDenied[] = {
      "org.freedesktop.DBus.Error.AccessDenied",
      "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
      "org.freedesktop.DBus.Error.AuthFailed",
  };
  static constexpr std::string_view kGone[] = {
      "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
      "org.freedesktop.DBus.Error.NoReply",        "org.freedesktop.DBus.Error.Disconnected",
      "org.freedesktop.DBus.Error.Timeout",        "org.freedesktop.DBus.Error.TimedOut",
      "org.freedesktop.DBus.Error.NoServer",
  };
  for (auto n : kDenied) {
    if (name == n) return make_error(Errc::kPermissionDenied, std::move(text));
  }
  for (auto n : kGone) {
    if (name == n) return make_error(Errc::kUnavailable, std::move(text));
  }
  if (name.starts_with("System.Error.")) {
    const int err = sd_bus_error_get_errno(e);
    if (err == EACCES || err == EPERM) return make_error(Errc::kPermissionDenied, std::move(text));
    if (is_disconnect_errno(err)) return make_error(Errc::kUnavailable, std::move(text));
  }
  return make_error(Errc::kInternal, std::move(text));
}

Error errno_error(std::string_view what, int negative_errno) {
  const Errc code = is_disconnect_errno(-negative_errno) ? Errc::kUnavailable : Errc::kIo;
  return make_error(code, std::string(what) + ": " + errno_text(negative_errno));
}

// Reads one org.freedesktop.login1.Session property dictionary (GetAll's a{sv}) into
// `session`. Properties we do not know, or whose type is not what logind documents, are
// skipped rather than failing the session.
Status read_session_properties(sd_bus_message* m, LogindSession& session) {
  const auto malformed = [](int r) {
    return make_error(Errc::kBadValue, "malformed session properties: " + errno_text(r));
  };
  int r = sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, "{sv}");
  if (r < 0) return malformed(r);
  for (;;) {
    r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, "sv");
    if (r < 0) return malformed(r);
    if (r == 0) break;
    const char* key = nullptr;
    r = sd_bus_message_read(m, "s", &key);
    if (r < 0) return malformed(r);
    char type = 0;
    const char* contents = nullptr;
    r = sd_bus_message_peek_type(m, &type, &contents);
    if (r < 0) return malformed(r);
    const std::string_view k(key);
    const std::string_view sig(contents != nullptr ? contents : "");

    std::string* text = nullptr;
    if (sig == "s") {
      if (k == "Id") text = &session.id;
      if (k == "Name") text = &session.user;
      if (k == "Type") text = &session.type;
      if (k == "Class") text = &session.session_class;
      if (k == "State") text = &session.state;
      if (k == "Display") text = &session.display;
      if (k == "Service") text = &session.service;
      if (k == "TTY") text = &session.tty;
    }
    if (text != nullptr) {
      const char* value = nullptr;
      r = sd_bus_message_read(m, "v", "s", &value);
      if (r >= 0) *text = value;
    } else if (sig == "b" && (k == "Active" || k == "Remote")) {
      int value = 0;
      r = sd_bus_message_read(m, "v", "b", &value);
      if (r >= 0) (k == "Active" ? session.active : session.remote) = value != 0;
    } else if (sig == "u" && k == "Leader") {
      std::uint32_t value = 0;
      r = sd_bus_message_read(m, "v", "u", &value);
      if (r >= 0) session.leader = value;
    } else if (sig == "(so)" && k == "Seat") {
      const char* seat = nullptr;
      const char* path = nullptr;
      r = sd_bus_message_read(m, "v", "(so)", &seat, &path);
      if (r >= 0) session.seat = seat;
    } else if (sig == "(uo)" && k == "User") {
      std::uint32_t uid = 0;
      const char* path = nullptr;
      r = sd_bus_message_read(m, "v", "(uo)", &uid, &path);
      if (r >= 0) session.uid = uid;
    } else {
      r = sd_bus_message_skip(m, "v");
    }
    if (r < 0) return malformed(r);
    r = sd_bus_message_exit_container(m);
    if (r < 0) return malformed(r);
  }
  r = sd_bus_message_exit_container(m);
  if (r < 0) return malformed(r);
  return ok_status();
}

// Lower is better; -1 is not a candidate. See pick_graphical_session in the header.
int session_rank(const LogindSession& s) {
  if (s.seat != "seat0" || s.remote) return -1;
  if (!(s.active || s.state == "active") || s.state == "closing") return -1;
  int type_rank = -1;
  if (s.type == "x11") type_rank = 0;
  if (s.type == "wayland") type_rank = 1;
  int class_rank = -1;
  if (s.session_class == "user") class_rank = 0;
  if (s.session_class == "greeter") class_rank = 1;
  if (type_rank < 0 || class_rank < 0) return -1;
  return class_rank * 2 + type_rank;
}

// Runs a user callback without letting an exception escape into sd-bus (C) code. Returns
// what it threw, if anything.
template <typename F>
std::optional<std::string> run_guarded(F&& f) noexcept {
  try {
    std::forward<F>(f)();
    return std::nullopt;
  } catch (const std::exception& e) {
    return std::string("a logind callback threw: ") + e.what();
  } catch (...) {
    return std::string("a logind callback threw");
  }
}

}  // namespace

std::optional<GraphicalSession> pick_graphical_session(std::span<const LogindSession> sessions) {
  const LogindSession* best = nullptr;
  int best_rank = -1;
  for (const auto& s : sessions) {
    const int rank = session_rank(s);
    if (rank >= 0 && (best == nullptr || rank < best_rank)) {
      best = &s;
      best_rank = rank;
    }
  }
  if (best == nullptr) return std::nullopt;
  return GraphicalSession{
      .id = best->id,
      .object_path = best->object_path,
      .uid = static_cast<uid_t>(best->uid),
      .user = best->user,
      .display = best->display,
      .seat = best->seat,
      .type = best->type,
      .session_class = best->session_class,
      .leader = static_cast<pid_t>(best->leader),
      .service = best->service,
  };
}

void Logind::BusDeleter::operator()(sd_bus* bus) const noexcept {
  // Close without flushing: flushing blocks until the bus daemon has read everything, and
  // the loop must never block. Calls still queued are dropped.
  sd_bus_close_unref(bus);
}

void Logind::SlotDeleter::operator()(sd_bus_slot* slot) const noexcept {
  // Unreferencing a reply slot cancels the call: sd-bus will not invoke its callback.
  sd_bus_slot_unref(slot);
}

struct Logind::SessionQuery {
  SessionDone done;
  std::vector<LogindSession> sessions;
  std::vector<bool> readable;
  std::size_t outstanding = 0;
  std::optional<Error> first_error;
};

Result<std::unique_ptr<Logind>> Logind::connect(Options options) {
  sd_bus* raw = nullptr;
  const int r = sd_bus_open_system(&raw);
  if (r < 0) return errno_error("cannot connect to the system bus", r);
  BusPtr bus(raw);
  return std::unique_ptr<Logind>(new Logind(std::move(bus), options));
}

Logind::Logind(BusPtr bus, Options options) : bus_(std::move(bus)), options_(options) {}

Logind::~Logind() {
  // Slots first (cancels the calls, so no callback can run), then the connection.
  calls_.clear();
  deferred_.clear();
  bus_.reset();
}

int Logind::fd() const {
  const int fd = sd_bus_get_fd(bus_.get());
  return fd < 0 ? -1 : fd;
}

short Logind::poll_events() const {
  const int events = sd_bus_get_events(bus_.get());
  return events < 0 ? short{0} : static_cast<short>(events);
}

std::optional<std::chrono::microseconds> Logind::timeout() const {
  if (!deferred_.empty() || callback_failure_) return std::chrono::microseconds(0);
  std::uint64_t until = 0;
  if (sd_bus_get_timeout(bus_.get(), &until) < 0 || until == UINT64_MAX) return std::nullopt;
  // sd-bus answers with an absolute CLOCK_MONOTONIC time; the loop wants a delay.
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const auto now = static_cast<std::uint64_t>(ts.tv_sec) * 1000000U +
                   static_cast<std::uint64_t>(ts.tv_nsec) / 1000U;
  return std::chrono::microseconds(until > now ? until - now : 0);
}

Status Logind::process() {
  const std::weak_ptr<int> alive = alive_;

  // Calls that failed before reaching the bus complete here, never inside the request.
  std::vector<std::function<void()>> deferred = std::move(deferred_);
  deferred_.clear();
  for (auto& complete : deferred) {
    auto failure = run_guarded(complete);
    if (alive.expired()) return ok_status();
    if (failure && !callback_failure_) callback_failure_ = std::move(failure);
  }

  Status status;
  for (int i = 0; i < kMaxProcessIterations; ++i) {
    const int r = sd_bus_process(bus_.get(), nullptr);
    // A callback may have destroyed this object: touch nothing of it then.
    if (alive.expired()) return ok_status();
    if (r == 0) break;
    if (r < 0) {
      status = errno_error("system bus connection", r);
      break;
    }
  }
  if (callback_failure_) {
    Error error = make_error(Errc::kInternal, std::move(*callback_failure_));
    callback_failure_.reset();
    return error;
  }
  return status;
}

struct Logind::Dispatch {
  static int on_message(sd_bus_message* message, void* userdata, sd_bus_error* error);
};

int Logind::Dispatch::on_message(sd_bus_message* message, void* userdata, sd_bus_error* /*error*/) {
  auto* call = static_cast<Call*>(userdata);
  Logind* self = call->owner;
  auto node = self->calls_.extract(call->id);
  if (node.empty()) return 0;
  ReplyHandler handler = std::move(node.mapped()->on_reply);
  // Drops our reference to the slot; sd-bus holds its own while it dispatches this reply.
  node = {};

  const std::weak_ptr<int> alive = self->alive_;
  auto failure = run_guarded([&] {
    if (sd_bus_message_is_method_error(message, nullptr) != 0) {
      handler(bus_error(sd_bus_message_get_error(message)));
    } else {
      handler(message);
    }
  });
  if (failure && !alive.expired() && !self->callback_failure_) {
    self->callback_failure_ = std::move(failure);
  }
  // Nothing of `self` after this point: the handler may have destroyed it.
  return 0;
}

void Logind::call(const char* path, const char* interface, const char* member,
                  const std::function<int(sd_bus_message*)>& append_args, ReplyHandler on_reply) {
  sd_bus_message* raw = nullptr;
  int r = sd_bus_message_new_method_call(bus_.get(), &raw, kService, path, interface, member);
  const MessagePtr message(raw);
  if (r >= 0 && append_args) r = append_args(message.get());

  auto call = std::make_unique<Call>();
  call->owner = this;
  call->id = next_call_id_++;
  sd_bus_slot* slot = nullptr;
  if (r >= 0) {
    // A timeout of 0 would mean sd-bus's default; never let a caller ask for "no timeout".
    const auto usec = std::max<std::int64_t>(options_.call_timeout.count(), 1);
    r = sd_bus_call_async(bus_.get(), &slot, message.get(), &Dispatch::on_message, call.get(),
                          static_cast<std::uint64_t>(usec));
  }
  if (r < 0) {
    Error error = errno_error(std::string("cannot call logind ") + member, r);
    deferred_.emplace_back(
        [handler = std::move(on_reply), error = std::move(error)]() { handler(error); });
    return;
  }
  call->slot.reset(slot);
  call->on_reply = std::move(on_reply);
  const std::uint64_t id = call->id;
  calls_.emplace(id, std::move(call));
}

void Logind::power_action(const char* member, Done done) {
  call(
      kManagerPath, kManagerInterface, member,
      // interactive=false: polkit must decide from its rules alone; nobody is there to ask.
      [](sd_bus_message* m) { return sd_bus_message_append(m, "b", 0); },
      [done = std::move(done)](Result<sd_bus_message*> reply) {
        if (!done) return;
        if (!reply.ok()) {
          done(std::move(reply).error());
        } else {
          done(ok_status());
        }
      });
}

void Logind::reboot(Done done) {
  power_action("Reboot", std::move(done));
}

void Logind::power_off(Done done) {
  power_action("PowerOff", std::move(done));
}

void Logind::find_graphical_session(SessionDone done) {
  auto query = std::make_shared<SessionQuery>();
  query->done = std::move(done);
  call(kManagerPath, kManagerInterface, "ListSessions", nullptr,
       [this, query](Result<sd_bus_message*> reply) {
         if (!reply.ok()) {
           const SessionDone finish = std::move(query->done);
           if (finish) finish(std::move(reply).error());
           return;
         }
         on_sessions_listed(query, reply.value());
       });
}

void Logind::on_sessions_listed(const std::shared_ptr<SessionQuery>& query, sd_bus_message* reply) {
  int r = sd_bus_message_enter_container(reply, SD_BUS_TYPE_ARRAY, "(susso)");
  while (r >= 0 && query->sessions.size() < kMaxSessions) {
    const char* id = nullptr;
    std::uint32_t uid = 0;
    const char* user = nullptr;
    const char* seat = nullptr;
    const char* path = nullptr;
    r = sd_bus_message_read(reply, "(susso)", &id, &uid, &user, &seat, &path);
    if (r <= 0) break;
    query->sessions.push_back(
        LogindSession{.id = id, .object_path = path, .uid = uid, .user = user, .seat = seat});
  }
  if (r < 0) {
    const SessionDone finish = std::move(query->done);
    if (finish) {
      finish(make_error(Errc::kBadValue, "malformed ListSessions reply: " + errno_text(r)));
    }
    return;
  }
  if (query->sessions.empty()) {
    const SessionDone finish = std::move(query->done);
    if (finish) finish(std::optional<GraphicalSession>{});
    return;
  }
  query->readable.assign(query->sessions.size(), false);
  query->outstanding = query->sessions.size();
  for (std::size_t i = 0; i < query->sessions.size(); ++i) {
    call(
        query->sessions[i].object_path.c_str(), kPropertiesInterface, "GetAll",
        [](sd_bus_message* m) { return sd_bus_message_append(m, "s", kSessionInterface); },
        [this, query, i](Result<sd_bus_message*> properties) {
          on_session_read(query, i, std::move(properties));
        });
  }
}

void Logind::on_session_read(const std::shared_ptr<SessionQuery>& query, std::size_t index,
                             Result<sd_bus_message*> reply) {
  Status read = reply.ok() ? read_session_properties(reply.value(), query->sessions[index])
                           : Status(std::move(reply).error());
  if (read.ok()) {
    query->readable[index] = true;
  } else if (!query->first_error) {
    query->first_error = read.error().context("session " + query->sessions[index].id);
  }
  if (--query->outstanding > 0) return;

  std::vector<LogindSession> readable;
  for (std::size_t i = 0; i < query->sessions.size(); ++i) {
    if (query->readable[i]) readable.push_back(std::move(query->sessions[i]));
  }
  const SessionDone finish = std::move(query->done);
  if (!finish) return;
  if (readable.empty()) {
    finish(*query->first_error);
  } else {
    finish(pick_graphical_session(readable));
  }
}

}  // namespace tether::platform
