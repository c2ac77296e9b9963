#include "vmm/kvm.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <fstream>
#include <string>

#include "vmm/kvm_abi.h"
#include "vmm/kvm_ioctl.h"

namespace kindling::vmm {

const char* to_string(KvmError e) {
  switch (e) {
    case KvmError::kOpen:
      return "cannot open /dev/kvm (is KVM available on this host?)";
    case KvmError::kPermission:
      return "no permission to open /dev/kvm (add the user to the kvm group or run as root)";
    case KvmError::kApiVersion:
      return "unsupported KVM API version";
    case KvmError::kMissingCapability:
      return "KVM capability missing on this host";
    case KvmError::kIoctl:
      return "KVM ioctl failed";
    case KvmError::kMmap:
      return "cannot map the vCPU's kvm_run area";
  }
  return "KVM error";
}

namespace {

constexpr std::array<RequiredCapability, 12> kRequired{{
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
    {KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS"},
    {KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"},
}};

}  // namespace

std::span<const RequiredCapability> required_capabilities() {
  return kRequired;
}

Result<void, KvmErr> check_kvm_support(int api_version,
                                       const std::function<int(int)>& check_extension) {
  if (api_version != kKvmApiVersion) {
    return fail(KvmError::kApiVersion, 0,
                "/dev/kvm speaks API version " + std::to_string(api_version) + ", kindling needs " +
                    std::to_string(kKvmApiVersion));
  }
  for (const RequiredCapability& c : kRequired) {
    if (check_extension(c.cap) <= 0) return fail(KvmError::kMissingCapability, 0, c.name);
  }
  return {};
}

Result<Kvm, KvmErr> Kvm::open(const char* path) {
  int fd = ::open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return fail(e == EACCES || e == EPERM ? KvmError::kPermission : KvmError::kOpen, e, path);
  }
  Kvm kvm{UniqueFd(fd)};
  int version = xioctl(fd, KVM_GET_API_VERSION, 0);
  auto ok = check_kvm_support(version, [&kvm](int cap) { return kvm.check_extension(cap); });
  if (!ok) return ok.take_error();
  return kvm;
}

int Kvm::check_extension(int cap) const {
  return xioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
}

Result<std::vector<kvm_cpuid_entry2>, KvmErr> Kvm::supported_cpuid() const {
  // KVM answers E2BIG while the buffer is too small; grow until it fits.
  for (size_t n = 128; n <= 4096; n *= 2) {
    abi::FlexBuffer<abi::Cpuid2Header, kvm_cpuid_entry2> buf(n);
    buf.header()->nent = static_cast<uint32_t>(n);
    if (xioctl(fd_.get(), abi::kGetSupportedCpuid, buf.data()) == 0) {
      return std::vector<kvm_cpuid_entry2>(buf.entries(), buf.entries() + buf.header()->nent);
    }
    if (errno != E2BIG) return ioctl_error("KVM_GET_SUPPORTED_CPUID");
  }
  return fail(KvmError::kIoctl, E2BIG, "KVM_GET_SUPPORTED_CPUID");
}

Result<size_t, KvmErr> Kvm::vcpu_mmap_size() const {
  int n = xioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (n <= 0) return ioctl_error("KVM_GET_VCPU_MMAP_SIZE");
  return static_cast<size_t>(n);
}

Result<Vm, KvmErr> Vm::create(const Kvm& kvm) {
  int fd = xioctl(kvm.fd(), KVM_CREATE_VM, 0);
  if (fd < 0) return ioctl_error("KVM_CREATE_VM");
  return Vm(UniqueFd(fd));
}

Result<void, KvmErr> Vm::set_tss_addr(uint64_t addr) const {
  if (xioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr)) < 0) {
    return ioctl_error("KVM_SET_TSS_ADDR");
  }
  return {};
}

Result<void, KvmErr> Vm::set_identity_map_addr(uint64_t addr) const {
  uint64_t a = addr;
  if (xioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &a) < 0) {
    return ioctl_error("KVM_SET_IDENTITY_MAP_ADDR");
  }
  return {};
}

Result<void, KvmErr> Vm::create_irqchip() const {
  if (xioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) < 0) return ioctl_error("KVM_CREATE_IRQCHIP");
  return {};
}

Result<void, KvmErr> Vm::create_pit2() const {
  kvm_pit_config cfg{};
  // The speaker port (0x61) is served in the kernel too, next to the PIT channels.
  cfg.flags = KVM_PIT_SPEAKER_DUMMY;
  if (xioctl(fd_.get(), KVM_CREATE_PIT2, &cfg) < 0) return ioctl_error("KVM_CREATE_PIT2");
  return {};
}

Result<void, KvmErr> Vm::map_memory(const memory::GuestMemory& mem) {
  for (const memory::MemoryRegion& r : mem.regions()) {
    kvm_userspace_memory_region slot{};
    slot.slot = next_slot_;
    slot.guest_phys_addr = r.base.value;
    slot.memory_size = r.size;
    slot.userspace_addr = reinterpret_cast<uint64_t>(r.host);
    if (xioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
      return ioctl_error("KVM_SET_USER_MEMORY_REGION");
    }
    ++next_slot_;
  }
  return {};
}

Result<void, KvmErr> Vm::ioeventfd(uint64_t addr, uint32_t len, std::optional<uint64_t> datamatch,
                                   const EventFd& fd, IoSpace space, bool deassign) const {
  kvm_ioeventfd io{};
  io.addr = addr;
  io.len = len;
  io.fd = fd.fd();
  if (datamatch) {
    io.datamatch = *datamatch;
    io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
  }
  if (space == IoSpace::kPio) io.flags |= KVM_IOEVENTFD_FLAG_PIO;
  if (deassign) io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  if (xioctl(fd_.get(), KVM_IOEVENTFD, &io) < 0) return ioctl_error("KVM_IOEVENTFD");
  return {};
}

Result<void, KvmErr> Vm::register_ioeventfd(uint64_t addr, uint32_t len,
                                            std::optional<uint64_t> datamatch, const EventFd& fd,
                                            IoSpace space) const {
  return ioeventfd(addr, len, datamatch, fd, space, false);
}

Result<void, KvmErr> Vm::unregister_ioeventfd(uint64_t addr, uint32_t len,
                                              std::optional<uint64_t> datamatch, const EventFd& fd,
                                              IoSpace space) const {
  return ioeventfd(addr, len, datamatch, fd, space, true);
}

Result<void, KvmErr> Vm::register_irqfd(uint32_t gsi, const EventFd& fd) const {
  kvm_irqfd irq{};
  irq.fd = static_cast<uint32_t>(fd.fd());
  irq.gsi = gsi;
  if (xioctl(fd_.get(), KVM_IRQFD, &irq) < 0) return ioctl_error("KVM_IRQFD");
  return {};
}

Result<void, KvmErr> Vm::unregister_irqfd(uint32_t gsi, const EventFd& fd) const {
  kvm_irqfd irq{};
  irq.fd = static_cast<uint32_t>(fd.fd());
  irq.gsi = gsi;
  irq.flags = KVM_IRQFD_FLAG_DEASSIGN;
  if (xioctl(fd_.get(), KVM_IRQFD, &irq) < 0) return ioctl_error("KVM_IRQFD deassign");
  return {};
}

Result<UniqueFd, KvmErr> Vm::create_vcpu_fd(uint32_t id) const {
  int fd = xioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (fd < 0) return ioctl_error("KVM_CREATE_VCPU");
  return UniqueFd(fd);
}

bool host_is_pvm() {
  struct stat st {};
  if (::stat("/sys/module/kvm_pvm", &st) == 0) return true;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    // The first CPU's flags line decides; hardware virtualization shows as vmx or svm.
    line += ' ';
    return line.find(" vmx ") == std::string::npos && line.find(" svm ") == std::string::npos;
  }
  return false;
}

}  // namespace kindling::vmm
