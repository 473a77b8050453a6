// RAII handles for libudev objects. libudev is reference counted: each handle owns one
// reference and drops it with the matching *_unref on destruction.
#pragma once

#include <libudev.h>

#include <memory>

namespace tether::platform {

template <typename T, T* (*Unref)(T*)>
struct UdevUnref {
  void operator()(T* handle) const noexcept { Unref(handle); }
};

using UdevPtr = std::unique_ptr<udev, UdevUnref<udev, udev_unref>>;
using UdevEnumeratePtr =
    std::unique_ptr<udev_enumerate, UdevUnref<udev_enumerate, udev_enumerate_unref>>;
using UdevDevicePtr = std::unique_ptr<udev_device, UdevUnref<udev_device, udev_device_unref>>;
using UdevMonitorPtr = std::unique_ptr<udev_monitor, UdevUnref<udev_monitor, udev_monitor_unref>>;

}  // namespace tether::platform
