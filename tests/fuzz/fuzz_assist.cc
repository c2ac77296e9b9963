// libFuzzer target: the PVM emulation assist end to end: the instruction decoder, the page
// walker (checked translation, Accessed/Dirty) and the executors (cmpxchg8b/16b, popcnt, the
// SYSCALL repair, ...) on a fuzzed vCPU state over fuzzed guest RAM. Input layout: exit-bytes
// length (1) and bytes (15), kvm_regs, kvm_sregs, LSTAR, STAR, FMASK, then guest RAM.
#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "common/memory/guest_memory.h"
#include "vmm/pvm/emulation_assist.h"

namespace {

using namespace kindling;

constexpr uint64_t kRamBytes = 64 * 1024;
constexpr uint32_t kMsrStar = 0xC0000081, kMsrLstar = 0xC0000082, kMsrFmask = 0xC0000084;

// A vCPU made of fields: the assist reads and writes them as it would a real one's.
class FuzzCpu : public vmm::AssistCpu {
 public:
  Result<kvm_regs, vmm::KvmErr> get_regs() override { return regs; }
  Result<void, vmm::KvmErr> set_regs(const kvm_regs& r) override {
    regs = r;
    return {};
  }
  Result<kvm_sregs, vmm::KvmErr> get_sregs() override { return sregs; }
  Result<void, vmm::KvmErr> set_sregs(const kvm_sregs& s) override {
    sregs = s;
    return {};
  }
  Result<void, vmm::KvmErr> inject_exception(uint8_t, std::optional<uint32_t>) override {
    return {};
  }
  Result<uint64_t, vmm::KvmErr> get_msr(uint32_t index) override {
    if (index == kMsrLstar) return lstar;
    if (index == kMsrStar) return star;
    if (index == kMsrFmask) return fmask;
    return uint64_t{0};
  }
  kvm_regs regs{};
  kvm_sregs sregs{};
  uint64_t lstar = 0, star = 0, fmask = 0;
};

// Copies the next sizeof(T) input bytes into `v`; false when the input is too short.
template <typename T>
bool take(const uint8_t*& p, size_t& left, T& v) {
  if (left < sizeof(T)) return false;
  std::memcpy(&v, p, sizeof(T));
  p += sizeof(T);
  left -= sizeof(T);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const memory::GuestMemory mem = *memory::GuestMemory::create({{0, kRamBytes}});
  const uint8_t* p = data;
  size_t left = size;
  uint8_t exit_len = 0;
  uint8_t exit_bytes[15] = {};
  FuzzCpu cpu;
  if (!take(p, left, exit_len) || !take(p, left, exit_bytes) || !take(p, left, cpu.regs) ||
      !take(p, left, cpu.sregs) || !take(p, left, cpu.lstar) || !take(p, left, cpu.star) ||
      !take(p, left, cpu.fmask)) {
    return 0;
  }
  auto ram = *mem.slice(memory::GuestAddress(0), kRamBytes);
  const size_t n = std::min<size_t>(left, kRamBytes);
  std::memcpy(ram.data(), p, n);
  std::memset(ram.data() + n, 0, kRamBytes - n);
  const auto out = vmm::assist_emulation_failure(
      cpu, mem, std::span<const uint8_t>(exit_bytes, exit_len % (sizeof(exit_bytes) + 1)));
  (void)out;
  return 0;
}
