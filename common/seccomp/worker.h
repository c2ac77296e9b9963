// A thread started ahead of time under a filter of its own, that runs jobs handed to it later.
//
// Filters are inherited: a thread created by a vCPU thread (a virtio-blk device activated by a
// register write) would be confined to the vCPU's list on top of its own. So such a thread is
// created early, by the still unconfined main thread, confines itself, and parks until a job
// arrives (Cloud Hypervisor moves device activation to its VMM thread for the same reason).
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/result.h"
#include "common/seccomp/seccomp.h"

namespace kindling::seccomp {

class Worker {
 public:
  // Starts the thread and waits until it is confined to `kind` (when `confine`) and parked.
  // `name` names it in a violation line.
  static Result<std::unique_ptr<Worker>, SeccompErr> start(ThreadKind kind, std::string name,
                                                           bool confine);
  // Starts the thread without waiting: it builds and loads its filter (a millisecond or so of
  // libseccomp work) while the caller goes on. Fails only when no thread can be started;
  // confined() reports how the confinement went, and run() waits for it.
  static Result<std::unique_ptr<Worker>, SeccompErr> launch(ThreadKind kind, std::string name,
                                                            bool confine);
  // Waits until the thread is confined and parked; its error when it could not confine itself
  // (it then runs nothing).
  Result<void, SeccompErr> confined() const;
  // Waits for the current job (whoever runs one makes it return first), then joins.
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Hands `job` to the thread once it is confined; false (and nothing runs) while an earlier job
  // is not yet waited for, or when the thread could not confine itself.
  bool run(std::function<void()> job);
  // Blocks until the job handed by run() has returned; no-op when there is none.
  void wait();
  // True from run() until wait() returns.
  bool has_job() const;

 private:
  Worker() = default;
  void loop(ThreadKind kind, bool confine);

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::function<void()> job_;
  bool has_job_ = false;   // run() .. wait()
  bool job_done_ = false;  // the thread finished job_
  bool ready_ = false;     // the thread is confined and parked (or failed: error_ set)
  bool exit_ = false;
  std::optional<SeccompErr> error_;
  std::string name_;
  std::thread thread_;
};

}  // namespace kindling::seccomp
