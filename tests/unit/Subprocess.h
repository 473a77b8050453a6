// Running helper programs (the openssl CLI) from tests: fork/exec with an argv array, never a
// shell string.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tether::testing {

inline std::optional<std::string> find_program(const std::string& name) {
  for (const char* dir : {"/usr/bin", "/bin", "/usr/local/bin"}) {
    const std::string path = std::string(dir) + "/" + name;
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return std::nullopt;
}

// A child process with its stdout readable through a pipe (stderr is inherited). Killed (SIGTERM)
// and reaped on destruction unless it has already been waited for.
class Process {
 public:
  Process() = default;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process() { stop(); }

  // Starts argv[0] (a full path) with `stdin_data` (if any) on its standard input. Its
  // standard output goes to a pipe (read_until, wait), or to `stdout_path` if given (for
  // long-running servers whose output nobody drains).
  bool start(const std::vector<std::string>& argv, std::optional<std::string> stdin_data = {},
             const std::string& stdout_path = "") {
    int out[2];
    int in[2] = {-1, -1};
    if (stdout_path.empty()) {
      if (::pipe2(out, O_CLOEXEC) != 0) return false;
    } else {
      out[0] = -1;
      out[1] = ::open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (out[1] < 0) return false;
    }
    if (stdin_data && ::pipe2(in, O_CLOEXEC) != 0) return false;
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      if (stdin_data) {
        ::dup2(in[0], STDIN_FILENO);
      } else {
        const int null = ::open("/dev/null", O_RDONLY);
        ::dup2(null, STDIN_FILENO);
      }
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(out[1]);
    out_ = out[0];  // -1 when output goes to a file
    if (stdin_data) {
      ::close(in[0]);
      ::signal(SIGPIPE, SIG_IGN);  // a child that exits early must not kill the test
      std::size_t done = 0;
      while (done < stdin_data->size()) {
        const ssize_t n = ::write(in[1], stdin_data->data() + done, stdin_data->size() - done);
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
      }
      ::close(in[1]);
    }
    return true;
  }

  [[nodiscard]] int out_fd() const { return out_; }
  [[nodiscard]] pid_t pid() const { return pid_; }

  // Reads until `needle` has appeared in the output (true) or the output ends (false).
  bool read_until(std::string_view needle) {
    if (out_ < 0) return false;
    char buf[4096];
    while (output_.find(needle) == std::string::npos) {
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      output_.append(buf, static_cast<std::size_t>(n));
    }
    return true;
  }

  // Reads everything up to the end of the output and returns the exit code (-1 if killed).
  int wait() {
    char buf[4096];
    while (out_ >= 0) {
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      output_.append(buf, static_cast<std::size_t>(n));
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    if (out_ >= 0) {
      ::close(out_);
      out_ = -1;
    }
  }

  [[nodiscard]] const std::string& output() const { return output_; }

  // True while the child has not exited (reaps it if it has).
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == 0) return true;
    pid_ = -1;
    return false;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string output_;
};

// Runs a program to completion; returns its exit code and output.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
inline CommandResult run_command(const std::vector<std::string>& argv,
                                 std::optional<std::string> stdin_data = {}) {
  Process p;
  if (!p.start(argv, std::move(stdin_data))) return {};
  const int code = p.wait();
  return {code, p.output()};
}

}  // namespace tether::testing
