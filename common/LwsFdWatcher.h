// Watches a file descriptor that is not a socket lws made (a udev monitor, rtnetlink, sd-bus,
// a child's pipe) on the process's lws loop: adopted as a raw file, so readiness arrives as
// lws callbacks instead of a second poll loop. lws closes what it adopts, so it gets a dup();
// the caller keeps owning the original fd.
#pragma once

#include <libwebsockets.h>

#include <functional>
#include <memory>

#include "common/Result.h"

namespace tether {

class LwsFdWatcher {
 public:
  // `vhost` must list lws_fd_watcher_protocol() in its protocol table.
  [[nodiscard]] static Result<std::unique_ptr<LwsFdWatcher>> watch(
      lws_vhost* vhost, int fd, std::function<void()> on_readable,
      std::function<void()> on_writable = {});
  ~LwsFdWatcher();
  LwsFdWatcher(const LwsFdWatcher&) = delete;
  LwsFdWatcher& operator=(const LwsFdWatcher&) = delete;

  // Asks for one on_writable callback when the fd can take output.
  void want_write();

  static int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, std::size_t len);

 private:
  LwsFdWatcher(std::function<void()> on_readable, std::function<void()> on_writable)
      : on_readable_(std::move(on_readable)), on_writable_(std::move(on_writable)) {}

  lws* wsi_ = nullptr;
  std::function<void()> on_readable_;
  std::function<void()> on_writable_;
};

// The protocol entry to put in a vhost's table for watchers.
[[nodiscard]] lws_protocols lws_fd_watcher_protocol();
inline constexpr const char* kFdWatcherProtocol = "tether-fd-watch";

}  // namespace tether
