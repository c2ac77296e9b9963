#include "block/io_engine.h"

#include <string>

#include "block/aio_engine.h"
#include "block/raw_image.h"
#include "block/sync_engine.h"
#include "block/uring_engine.h"
#include "common/log.h"

namespace kindling::block {

const char* to_string(BlockError e) {
  switch (e) {
    case BlockError::kOpen:
      return "cannot open the disk image";
    case BlockError::kLocked:
      return "the disk image is in use by another process (locked)";
    case BlockError::kBadSize:
      return "the disk image size must be a non-zero multiple of 512 bytes";
    case BlockError::kStat:
      return "cannot inspect the disk image";
    case BlockError::kEngineSetup:
      return "cannot set up the I/O engine";
    case BlockError::kSubmit:
      return "cannot submit the request";
    case BlockError::kQueueFull:
      return "too many requests in flight";
    case BlockError::kUnknownEngine:
      return "unknown I/O engine (known: libaio, io_uring, sync)";
    case BlockError::kBadFaultRule:
      return "";  // the context reads as one line
  }
  return "block error";
}

Result<std::unique_ptr<IoEngine>, BlockErr> make_engine(std::string_view name, RawImage& image,
                                                        size_t max_in_flight, bool confine) {
  if (name == "libaio") {
    auto e = AioEngine::create(image, max_in_flight, true, kDefaultSubmitBatch, confine);
    if (!e) return e.take_error();
    return std::unique_ptr<IoEngine>(std::move(*e));
  }
  if (name == "io_uring") {
    auto e = UringEngine::create(image, max_in_flight);
    if (e) return std::unique_ptr<IoEngine>(std::move(*e));
    KLOG_WARN("%s: io_uring unavailable (%s): using libaio", image.path().c_str(),
              e.error().message().c_str());
    return make_engine("libaio", image, max_in_flight);
  }
  if (name == "sync") {
    auto e = SyncEngine::create(image, max_in_flight);
    if (!e) return e.take_error();
    return std::unique_ptr<IoEngine>(std::move(*e));
  }
  return fail(BlockError::kUnknownEngine, 0, std::string(name));
}

}  // namespace kindling::block
