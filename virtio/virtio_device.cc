#include "virtio/virtio_device.h"

namespace kindling::virtio {

const char* to_string(DeviceError e) {
  switch (e) {
    case DeviceError::kActivate:
      return "device activation failed";
    case DeviceError::kBadQueue:
      return "bad virtqueue configuration";
  }
  return "device error";
}

}  // namespace kindling::virtio
