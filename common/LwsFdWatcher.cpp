#include "common/LwsFdWatcher.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tether {

lws_protocols lws_fd_watcher_protocol() {
  lws_protocols p{};
  p.name = kFdWatcherProtocol;
  p.callback = &LwsFdWatcher::callback;
  return p;
}

Result<std::unique_ptr<LwsFdWatcher>> LwsFdWatcher::watch(lws_vhost* vhost, int fd,
                                                          std::function<void()> on_readable,
                                                          std::function<void()> on_writable) {
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    return make_error(Errc::kIo,
                      std::string("cannot duplicate a descriptor: ") + std::strerror(errno));
  }
  std::unique_ptr<LwsFdWatcher> self(
      new LwsFdWatcher(std::move(on_readable), std::move(on_writable)));
  lws_adopt_desc_t desc{};
  desc.vh = vhost;
  desc.type = LWS_ADOPT_RAW_FILE_DESC;
  desc.fd.filefd = copy;
  desc.vh_prot_name = kFdWatcherProtocol;
  desc.opaque = self.get();
  self->wsi_ = lws_adopt_descriptor_vhost_via_info(&desc);
  if (self->wsi_ == nullptr) {
    // On failure lws may or may not have closed it; it never closes twice what it does not hold.
    ::close(copy);
    return make_error(Errc::kInternal, "cannot add a descriptor to the event loop");
  }
  return self;
}

LwsFdWatcher::~LwsFdWatcher() {
  if (wsi_ != nullptr) {
    lws_set_opaque_user_data(wsi_, nullptr);
    lws_set_timeout(wsi_, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
  }
}

void LwsFdWatcher::want_write() {
  if (wsi_ != nullptr) lws_callback_on_writable(wsi_);
}

int LwsFdWatcher::callback(lws* wsi, lws_callback_reasons reason, void* user, void* in,
                           std::size_t len) {
  auto* self = static_cast<LwsFdWatcher*>(lws_get_opaque_user_data(wsi));
  switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE:
      if (self != nullptr && self->on_readable_) self->on_readable_();
      return 0;
    case LWS_CALLBACK_RAW_WRITEABLE_FILE:
      if (self != nullptr && self->on_writable_) self->on_writable_();
      return 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
      if (self != nullptr) self->wsi_ = nullptr;
      return 0;
    default: break;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

}  // namespace tether
