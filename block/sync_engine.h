// The synchronous engine: preadv/pwritev/fdatasync/fallocate run inline at submission. The fallback
// where libaio is unavailable, and the oracle the other engines are tested against.
#pragma once

#include <memory>
#include <vector>

#include "block/aligned_engine.h"

namespace kindling::block {

class RawImage;

// Runs each request to completion inside read()/write()/flush(); completions wait for reap().
class SyncEngine final : public AlignedEngine {
 public:
  // `image` must outlive the engine.
  static Result<std::unique_ptr<SyncEngine>, BlockErr> create(RawImage& image,
                                                              size_t max_in_flight);

  // Nothing is ever queued: every request already ran.
  Result<void, BlockErr> flush_submissions() override { return {}; }

 private:
  SyncEngine(RawImage& image, EventFd notifier, size_t max_in_flight);
  void start(const KernelOp& op) override;
  void after_accept() override;
  int64_t execute(const KernelOp& op);

  std::vector<KernelOp> ops_;  // started by the request layer, run by after_accept()
};

}  // namespace kindling::block
