// Shared by the ACPI table tests: the platforms they describe and a reader that follows the
// tables in guest memory the way a kernel does (RSDP -> XSDT -> FADT -> DSDT, MADT).
#pragma once

#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "common/memory/guest_memory.h"
#include "vmm/boot/acpi/fadt.h"
#include "vmm/boot/acpi/rsdp.h"
#include "vmm/boot/acpi/sdt.h"
#include "vmm/boot/platform.h"

namespace kindling::vmm::acpi::acpi_test {

// Where kindling puts disk i (vmm/disks.h, not included: it is not header-only): a 4 KiB slot
// from 0xD0000000 and GSI 5 + i.
inline Platform platform_with(uint32_t vcpus, size_t disks) {
  Platform p;
  p.vcpus = vcpus;
  for (size_t i = 0; i < disks; ++i) {
    p.virtio_mmio.push_back({0xD0000000 + i * 0x1000, 0x1000, static_cast<uint32_t>(5 + i)});
  }
  return p;
}
// Most disks kindling attaches: GSIs 5..23.
inline constexpr size_t kMaxDisks = 19;

// The byte sum of `bytes` (0 for a table with a good checksum).
inline uint8_t byte_sum(const std::vector<uint8_t>& bytes) {
  return std::accumulate(bytes.begin(), bytes.end(), uint8_t{0});
}

// A trivially-copyable struct read from the start of `bytes`.
template <typename T>
T load(const std::vector<uint8_t>& bytes, size_t at = 0) {
  T v{};
  if (at + sizeof(T) <= bytes.size()) std::memcpy(&v, bytes.data() + at, sizeof(T));
  return v;
}

// The four-character signature of a table.
inline std::string signature_of(const std::vector<uint8_t>& table) {
  return table.size() >= 4 ? std::string(table.begin(), table.begin() + 4) : std::string();
}

// The tables as a kernel finds them in guest memory.
struct FoundTables {
  std::vector<uint8_t> rsdp, xsdt, fadt, madt, dsdt;
  uint64_t rsdp_addr = 0, xsdt_addr = 0, dsdt_addr = 0;
  std::vector<uint64_t> xsdt_entries;
};

// The table at `addr`, as long as its header says (empty when unreadable).
inline std::vector<uint8_t> read_table(const memory::GuestMemory& mem, uint64_t addr) {
  auto hdr = mem.read_obj<SdtHeader>(memory::GuestAddress(addr));
  if (!hdr || hdr->length < sizeof(SdtHeader) || hdr->length > 0x10000) return {};
  std::vector<uint8_t> out(hdr->length);
  if (!mem.read(memory::GuestAddress(addr), out)) return {};
  return out;
}

// Scans the BIOS area [0xE0000, 0x100000) on 16-byte boundaries for an RSDP whose ACPI 1.0
// checksum holds (as Linux's acpi_find_root_pointer() does), then follows its pointers.
inline FoundTables find_tables(const memory::GuestMemory& mem) {
  FoundTables t;
  for (uint64_t a = 0xE0000; a < 0x100000; a += 16) {
    std::vector<uint8_t> head(kRsdpV1Size);
    if (!mem.read(memory::GuestAddress(a), head)) continue;
    if (std::memcmp(head.data(), "RSD PTR ", 8) != 0 || byte_sum(head) != 0) continue;
    t.rsdp_addr = a;
    t.rsdp.resize(sizeof(Rsdp));
    if (!mem.read(memory::GuestAddress(a), t.rsdp)) return t;
    break;
  }
  if (t.rsdp.empty()) return t;
  t.xsdt_addr = load<Rsdp>(t.rsdp).xsdt_address;
  t.xsdt = read_table(mem, t.xsdt_addr);
  for (size_t off = sizeof(SdtHeader); off + 8 <= t.xsdt.size(); off += 8) {
    const uint64_t addr = load<uint64_t>(t.xsdt, off);
    t.xsdt_entries.push_back(addr);
    std::vector<uint8_t> table = read_table(mem, addr);
    if (signature_of(table) == "FACP") t.fadt = table;
    if (signature_of(table) == "APIC") t.madt = table;
  }
  if (t.fadt.size() >= sizeof(Fadt)) {
    t.dsdt_addr = load<Fadt>(t.fadt).x_dsdt;
    t.dsdt = read_table(mem, t.dsdt_addr);
  }
  return t;
}

}  // namespace kindling::vmm::acpi::acpi_test
