// The KVM system and VM file descriptors: start-up checks, memory slots, the in-kernel irqchip
// and PIT, and the ioeventfd/irqfd registrations devices are wired with.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/event_fd.h"
#include "common/memory/guest_memory.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace kindling::vmm {

// What went wrong talking to KVM; the error context names the ioctl or capability.
enum class KvmError {
  kOpen,               // /dev/kvm missing or not openable
  kPermission,         // /dev/kvm exists but this user may not open it
  kApiVersion,         // KVM_GET_API_VERSION is not 12
  kMissingCapability,  // a capability kindling relies on is absent
  kIoctl,              // an ioctl failed
  kMmap,               // mapping the kvm_run area failed
};
// A short description of the error class.
const char* to_string(KvmError e);
// The KVM layer's error type.
using KvmErr = Error<KvmError>;

// The KVM API version every kindling build speaks.
inline constexpr int kKvmApiVersion = KVM_API_VERSION;

// A capability kindling cannot run without, and its name for the error line.
struct RequiredCapability {
  int cap;
  const char* name;
};
// Every capability checked at start-up.
std::span<const RequiredCapability> required_capabilities();

// Pure part of the start-up check: the API version and each required capability, queried
// through `check_extension` (KVM_CHECK_EXTENSION's result, > 0 meaning present).
Result<void, KvmErr> check_kvm_support(int api_version,
                                       const std::function<int(int)>& check_extension);

// Which address space an ioeventfd watches.
enum class IoSpace { kPio, kMmio };

// The /dev/kvm system fd.
class Kvm {
 public:
  // Opens `path`, checks the API version and every required capability.
  static Result<Kvm, KvmErr> open(const char* path = "/dev/kvm");

  int fd() const { return fd_.get(); }
  // KVM_CHECK_EXTENSION on the system fd.
  int check_extension(int cap) const;
  // KVM_GET_SUPPORTED_CPUID: every leaf this host's KVM can present to a guest.
  Result<std::vector<kvm_cpuid_entry2>, KvmErr> supported_cpuid() const;
  // Size of the per-vCPU kvm_run mapping.
  Result<size_t, KvmErr> vcpu_mmap_size() const;

 private:
  explicit Kvm(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// One VM fd. Guest memory registered with map_memory() must outlive it.
class Vm {
 public:
  // KVM_CREATE_VM.
  static Result<Vm, KvmErr> create(const Kvm& kvm);

  int fd() const { return fd_.get(); }

  // KVM_SET_TSS_ADDR: three pages Intel VMX needs for real mode; must lie outside RAM.
  Result<void, KvmErr> set_tss_addr(uint64_t addr) const;
  // KVM_SET_IDENTITY_MAP_ADDR: one page for VMX's real-mode identity map, outside RAM.
  Result<void, KvmErr> set_identity_map_addr(uint64_t addr) const;
  // KVM_CREATE_IRQCHIP: in-kernel PIC, IOAPIC and per-vCPU LAPICs.
  Result<void, KvmErr> create_irqchip() const;
  // KVM_CREATE_PIT2: in-kernel i8254 PIT (and the speaker port 0x61).
  Result<void, KvmErr> create_pit2() const;
  // One memory slot per region of `mem` (KVM_SET_USER_MEMORY_REGION).
  Result<void, KvmErr> map_memory(const memory::GuestMemory& mem);

  // Makes a guest write of `len` bytes at `addr` (equal to `datamatch` when given) signal `fd`
  // inside the kernel instead of exiting to user space (KVM_IOEVENTFD).
  Result<void, KvmErr> register_ioeventfd(uint64_t addr, uint32_t len,
                                          std::optional<uint64_t> datamatch, const EventFd& fd,
                                          IoSpace space = IoSpace::kMmio) const;
  // Removes a registration made with the same arguments.
  Result<void, KvmErr> unregister_ioeventfd(uint64_t addr, uint32_t len,
                                            std::optional<uint64_t> datamatch, const EventFd& fd,
                                            IoSpace space = IoSpace::kMmio) const;
  // Makes a signal on `fd` pulse interrupt line `gsi` (edge) in the in-kernel irqchip.
  Result<void, KvmErr> register_irqfd(uint32_t gsi, const EventFd& fd) const;
  // Removes an irqfd registration.
  Result<void, KvmErr> unregister_irqfd(uint32_t gsi, const EventFd& fd) const;

  // KVM_CREATE_VCPU; `id` is also the vCPU's APIC id.
  Result<UniqueFd, KvmErr> create_vcpu_fd(uint32_t id) const;

 private:
  explicit Vm(UniqueFd fd) : fd_(std::move(fd)) {}
  Result<void, KvmErr> ioeventfd(uint64_t addr, uint32_t len, std::optional<uint64_t> datamatch,
                                 const EventFd& fd, IoSpace space, bool deassign) const;
  UniqueFd fd_;
  uint32_t next_slot_ = 0;
};

// True when this host's /dev/kvm is PVM (no vmx/svm CPU flag, or the kvm_pvm module loaded):
// guest kernel code is emulated there and needs the switches of docs/HOST.md.
bool host_is_pvm();

}  // namespace kindling::vmm
