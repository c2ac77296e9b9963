// Confinement with seccomp-bpf: one allow-list per kind of thread (allow_lists.cc), installed by
// each thread on itself before it touches guest input. A syscall outside the list traps
// (SIGSYS); the handler writes one line naming the thread and the syscall, e.g.
//   kindling: seccomp: thread 'vcpu0' made forbidden syscall socket (41)
// and ends the process with kExitSeccomp.
//
// A filter is inherited by the threads its thread creates, and stacked filters intersect: a
// thread that creates threads installs its own filter only after the last one (the main thread
// after the vCPU and console threads), and threads created on demand later (a disk's I/O thread)
// are started up front by an unconfined thread and parked (seccomp::Worker, worker.h).
#pragma once

#include <string_view>

#include "common/result.h"

namespace kindling::seccomp {

// The kinds of threads kindling runs; each has its own allow-list.
enum class ThreadKind {
  kMain,       // builds the VM, then waits for a stop (signals, halt probe, timeout), tears down
  kVcpu,       // KVM_RUN and the exit dispatch to devices (serial, virtio-mmio registers)
  kBlockIo,    // a disk's I/O thread: epoll, eventfds, its engine (libaio, sync, io_uring)
  kBlockSync,  // the libaio engine's fdatasync helper (kernels without IOCB_CMD_FDSYNC)
  kConsole,    // host console input: poll and read stdin, feed the UART
  kApi,        // the HTTP API server over a Unix socket; opens drive images for a hot swap
};
// "main", "vcpu", "block-io", ...
const char* to_string(ThreadKind kind);

// `kindling run`'s exit status after a forbidden syscall (Firecracker uses the same number).
inline constexpr int kExitSeccomp = 148;

enum class SeccompError {
  kBuild,   // libseccomp refused a rule
  kLoad,    // the kernel refused the filter (no seccomp support?)
  kSignal,  // the SIGSYS handler could not be installed
};
const char* to_string(SeccompError e);
using SeccompErr = Error<SeccompError>;

// Confines the calling thread, irrevocably, to `kind`'s allow-list. `name` (at most 15
// characters are kept) names the thread in the violation line and in /proc (its comm).
Result<void, SeccompErr> install(ThreadKind kind, std::string_view name);

// The name a violation line gives syscall `nr` ("socket"; "?" for a number it does not know).
// Async-signal-safe once install() has run.
const char* syscall_name(long nr);

}  // namespace kindling::seccomp
