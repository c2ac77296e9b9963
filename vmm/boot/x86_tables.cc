#include "vmm/boot/x86_tables.h"

#include <array>
#include <vector>

#include "vmm/layout.h"

namespace kindling::vmm {

static_assert(kGdtLimit == layout::kGdtEntries * sizeof(uint64_t) - 1);
static_assert(layout::kPdCount * (1ULL << 30) == layout::kIdentityMapSize);

namespace {
constexpr uint64_t kEntriesPerTable = 512;
constexpr uint64_t kTableBytes = kEntriesPerTable * sizeof(uint64_t);
}  // namespace

Result<void, BootErr> write_gdt_idt(const memory::GuestMemory& mem) {
  const std::array<uint64_t, layout::kGdtEntries> gdt = {0, layout::kGdtCode32, layout::kGdtCode64,
                                                         layout::kGdtData};
  if (auto r = mem.write_obj(memory::GuestAddress(layout::kGdtAddr), gdt); !r) {
    return memory_error(r.error(), "GDT");
  }
  if (auto r = mem.write_obj(memory::GuestAddress(layout::kIdtAddr), uint64_t{0}); !r) {
    return memory_error(r.error(), "IDT");
  }
  return {};
}

Result<void, BootErr> write_page_tables(const memory::GuestMemory& mem) {
  std::vector<uint64_t> pml4(kEntriesPerTable, 0);
  std::vector<uint64_t> pdpt(kEntriesPerTable, 0);
  std::vector<uint64_t> pds(layout::kPdCount * kEntriesPerTable, 0);
  pml4[0] = layout::kPdptAddr | kPtePresent | kPteWritable;
  for (uint64_t i = 0; i < layout::kPdCount; ++i) {
    pdpt[i] = (layout::kPdAddr + i * kTableBytes) | kPtePresent | kPteWritable;
  }
  for (uint64_t i = 0; i < pds.size(); ++i) {
    pds[i] = (i * kHugePageSize) | kPtePresent | kPteWritable | kPteHuge;
  }
  auto bytes = [](const std::vector<uint64_t>& v) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()),
                                    v.size() * sizeof(uint64_t));
  };
  if (auto r = mem.write(memory::GuestAddress(layout::kPml4Addr), bytes(pml4)); !r) {
    return memory_error(r.error(), "PML4");
  }
  if (auto r = mem.write(memory::GuestAddress(layout::kPdptAddr), bytes(pdpt)); !r) {
    return memory_error(r.error(), "PDPT");
  }
  if (auto r = mem.write(memory::GuestAddress(layout::kPdAddr), bytes(pds)); !r) {
    return memory_error(r.error(), "page directories");
  }
  return {};
}

}  // namespace kindling::vmm
