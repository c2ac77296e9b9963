#include "vmm/boot/boot_loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "common/unique_fd.h"
#include "vmm/boot/acpi/tables.h"
#include "vmm/boot/boot_params.h"
#include "vmm/boot/bzimage.h"
#include "vmm/boot/elf_loader.h"
#include "vmm/boot/mptable.h"
#include "vmm/boot/pvh.h"
#include "vmm/boot/x86_tables.h"
#include "vmm/layout.h"

namespace kindling::vmm {

const char* to_string(BootError e) {
  switch (e) {
    case BootError::kOpen:
      return "cannot open";
    case BootError::kRead:
      return "cannot read";
    case BootError::kNotKernel:
      return "not a kernel (expected a bzImage or an ELF64 vmlinux)";
    case BootError::kUnsupported:
      return "unsupported kernel";
    case BootError::kTooLarge:
      return "does not fit in guest RAM";
    case BootError::kCmdlineTooLong:
      return "kernel command line too long";
    case BootError::kInitrd:
      return "cannot place the initrd";
    case BootError::kMemory:
      return "guest memory cannot hold the boot layout";
    case BootError::kBadSpec:
      return "bad boot request";
    case BootError::kNoPvhEntry:
      return "no PVH entry";
  }
  return "boot error";
}

namespace {

constexpr uint64_t kPageSize = 4096;

// An open regular file and its size.
struct OpenFile {
  UniqueFd fd;
  uint64_t size = 0;
};

// Opens `path` for reading; `who` names it in errors ("kernel /path").
Result<OpenFile, BootErr> open_file(const std::string& path, const std::string& who) {
  OpenFile f;
  f.fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!f.fd) return fail_errno(BootError::kOpen, who);
  struct stat st;
  if (::fstat(f.fd.get(), &st) != 0) return fail_errno(BootError::kOpen, who);
  if (!S_ISREG(st.st_mode)) return fail(BootError::kRead, 0, who + ": not a regular file");
  f.size = static_cast<uint64_t>(st.st_size);
  return f;
}

// A kernel or initrd larger than guest RAM can never load: say so before reading it.
Result<void, BootErr> fits_in_ram(const OpenFile& f, const memory::GuestMemory& mem,
                                  const std::string& who) {
  if (f.size <= mem.total_size()) return {};
  return fail(BootError::kTooLarge, 0,
              who + ": " + std::to_string(f.size) + " bytes, guest RAM is " +
                  std::to_string(mem.total_size()));
}

// Reads exactly out.size() bytes from the start of the file.
Result<void, BootErr> read_all(const OpenFile& f, std::span<uint8_t> out, const std::string& who) {
  uint64_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(f.fd.get(), out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno(BootError::kRead, who);
    if (n == 0) return fail(BootError::kRead, 0, who + ": file shrank while reading");
    done += static_cast<uint64_t>(n);
  }
  return {};
}

// Reads the kernel file into host memory, refusing files larger than guest RAM.
Result<std::vector<uint8_t>, BootErr> read_kernel(const memory::GuestMemory& mem,
                                                  const std::string& path, const std::string& who) {
  auto f = open_file(path, who);
  if (!f) return f.take_error();
  if (auto r = fits_in_ram(*f, mem, who); !r) return r.take_error();
  std::vector<uint8_t> bytes(f->size);
  if (auto r = read_all(*f, bytes, who); !r) return r.take_error();
  return bytes;
}

Result<LoadedKernel, BootErr> load_image(const memory::GuestMemory& mem, const std::string& path) {
  const std::string who = "kernel " + path;
  auto bytes = read_kernel(mem, path, who);
  if (!bytes) return bytes.take_error();
  if (looks_like_bzimage(*bytes)) return load_bzimage(mem, *bytes, path);
  if (looks_like_elf(*bytes)) return load_elf(mem, *bytes, path);
  return fail(BootError::kNotKernel, 0,
              who + ": neither bzImage \"HdrS\" nor ELF magic (" + std::to_string(bytes->size()) +
                  " bytes)");
}

Result<void, BootErr> write_cmdline(const memory::GuestMemory& mem, const std::string& cmdline,
                                    const setup_header& hdr) {
  uint32_t max = max_cmdline_len(hdr);
  if (cmdline.size() > max) {
    return fail(BootError::kCmdlineTooLong, 0,
                std::to_string(cmdline.size()) + " bytes, the kernel accepts at most " +
                    std::to_string(max));
  }
  // c_str() includes the terminating NUL.
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(cmdline.c_str()),
                                 cmdline.size() + 1);
  if (auto r = mem.write(memory::GuestAddress(layout::kCmdlineAddr), bytes); !r) {
    return memory_error(r.error(), "command line");
  }
  return {};
}

// Loads the initrd page-aligned at the top of low RAM, below initrd_addr_max and above the
// kernel; records where in args.initrd_addr/initrd_size.
Result<void, BootErr> load_initrd(const memory::GuestMemory& mem, const std::string& path,
                                  const LoadedKernel& kernel, BootParamsArgs& args) {
  const std::string who = "initrd " + path;
  auto f = open_file(path, who);
  if (!f) return f.take_error();
  if (f->size == 0) return fail(BootError::kInitrd, 0, who + ": empty file");
  if (auto r = fits_in_ram(*f, mem, who); !r) return r.take_error();
  uint64_t limit = std::min(initrd_limit(kernel.hdr), low_ram_end(mem));
  uint64_t addr = limit >= f->size ? (limit - f->size) & ~(kPageSize - 1) : 0;
  if (limit < f->size || addr < kernel.end) {
    return fail(BootError::kInitrd, 0,
                who + ": " + std::to_string(f->size) + " bytes do not fit between the kernel end " +
                    hex(kernel.end) + " and " + hex(limit));
  }
  auto dst = mem.slice(memory::GuestAddress(addr), f->size);
  if (!dst) return memory_error(dst.error(), who);
  if (auto r = read_all(*f, *dst, who); !r) return r.take_error();
  args.initrd_addr = addr;
  args.initrd_size = f->size;
  return {};
}

// The protocol the kernel is entered with: PVH needs the note (and an entry inside the
// kernel); auto takes it whenever the note is there.
Result<BootProtocol, BootErr> choose_protocol(const BootSpec& spec, const LoadedKernel& k) {
  const bool has_pvh = k.pvh_entry.has_value();
  if (spec.protocol == BootProtocol::kPvh && !has_pvh) {
    return fail(BootError::kNoPvhEntry, 0,
                "kernel " + spec.kernel_path +
                    ": --boot-protocol pvh, but the kernel has no PVH entry (no "
                    "XEN_ELFNOTE_PHYS32_ENTRY note; built without CONFIG_PVH?)");
  }
  const bool pvh =
      spec.protocol == BootProtocol::kPvh || (spec.protocol == BootProtocol::kAuto && has_pvh);
  if (!pvh) return BootProtocol::kLinux;
  if (*k.pvh_entry < k.start || *k.pvh_entry >= k.end) {
    return fail(BootError::kNotKernel, 0,
                "kernel " + spec.kernel_path + ": PVH entry " + hex(*k.pvh_entry) +
                    " lies outside the loaded kernel");
  }
  return BootProtocol::kPvh;
}

// The GDT, IDT and page tables (64-bit entry), and the CPU state for `protocol`.
BootEntry boot_entry(BootProtocol protocol, const LoadedKernel& k, uint64_t rsdp) {
  BootEntry entry;
  entry.protocol = protocol;
  entry.rsp = layout::kBootStackTop;
  entry.gdt_base = layout::kGdtAddr;
  entry.gdt_limit = kGdtLimit;
  entry.idt_base = layout::kIdtAddr;
  entry.idt_limit = kIdtLimit;
  entry.data_selector = layout::kDataSelector;
  entry.rsdp_addr = rsdp;
  if (protocol == BootProtocol::kPvh) {
    entry.rip = *k.pvh_entry;
    entry.rbx = layout::kPvhStartInfoAddr;
    entry.code_selector = layout::kCode32Selector;
  } else {
    entry.rip = k.entry;
    entry.rsi = layout::kZeroPageAddr;
    entry.cr3 = layout::kPml4Addr;
    entry.code_selector = layout::kCodeSelector;
  }
  return entry;
}

}  // namespace

Result<BootEntry, BootErr> load_kernel(const memory::GuestMemory& mem, const BootSpec& spec) {
  const uint32_t vcpus = spec.platform.vcpus;
  if (vcpus == 0 || vcpus > layout::kMaxVcpus) {
    return fail(
        BootError::kBadSpec, 0,
        std::to_string(vcpus) + " vCPUs (must be 1.." + std::to_string(layout::kMaxVcpus) + ")");
  }
  if (low_ram_end(mem) <= layout::kHighMemStart) {
    return fail(BootError::kMemory, 0,
                "guest RAM must start at 0 and extend beyond 1 MiB (has " +
                    std::to_string(mem.total_size()) + " bytes)");
  }
  auto kernel = load_image(mem, spec.kernel_path);
  if (!kernel) return kernel.take_error();
  auto protocol = choose_protocol(spec, *kernel);
  if (!protocol) return protocol.take_error();

  BootParamsArgs args;
  args.hdr = kernel->hdr;
  args.cmdline_addr = layout::kCmdlineAddr;
  if (auto r = write_cmdline(mem, spec.cmdline, kernel->hdr); !r) return r.take_error();
  if (spec.initrd_path) {
    if (auto r = load_initrd(mem, *spec.initrd_path, *kernel, args); !r) return r.take_error();
  }
  if (spec.platform.acpi) {
    auto rsdp = acpi::write_acpi_tables(mem, spec.platform);
    if (!rsdp) return rsdp.take_error();
    args.rsdp_addr = *rsdp;
  }
  if (auto r = write_boot_params(mem, args); !r) return r.take_error();
  if (*protocol == BootProtocol::kPvh) {
    const PvhArgs pvh{args.cmdline_addr, args.initrd_addr, args.initrd_size, args.rsdp_addr};
    if (auto r = write_pvh_start_info(mem, pvh); !r) return r.take_error();
  }
  if (auto r = write_mptable(mem, vcpus); !r) return r.take_error();
  if (auto r = write_gdt_idt(mem); !r) return r.take_error();
  if (auto r = write_page_tables(mem); !r) return r.take_error();
  return boot_entry(*protocol, *kernel, args.rsdp_addr);
}

}  // namespace kindling::vmm
