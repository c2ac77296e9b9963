// What every ACPI system description table shares: the 36-byte header with kindling's OEM
// fields, the checksum that makes a table's bytes sum to zero, and the Generic Address
// Structure the FADT's registers use. Each table type (xsdt.h, fadt.h, madt.h, dsdt.h) builds
// its body and lets Sdt finish the header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

namespace kindling::vmm::acpi {

// ACPI 6.5 5.2.6: System Description Table Header (36 bytes).
struct __attribute__((packed)) SdtHeader {
  char signature[4];          // "FACP", "APIC", "DSDT", "XSDT"
  uint32_t length;            // the whole table, header included
  uint8_t revision;           // of the table's own layout
  uint8_t checksum;           // the whole table sums to 0
  char oem_id[6];             // kOemId
  char oem_table_id[8];       // kOemTableId
  uint32_t oem_revision;      // kOemRevision
  char creator_id[4];         // kCreatorId: who built the table
  uint32_t creator_revision;  // kCreatorRevision
};
static_assert(sizeof(SdtHeader) == 36);

// ACPI 6.5 5.2.3.2: Generic Address Structure (12 bytes).
struct __attribute__((packed)) GenericAddress {
  uint8_t space_id;     // kGasSystemMemory, kGasSystemIo
  uint8_t bit_width;    // register size in bits
  uint8_t bit_offset;   // of the register in the address
  uint8_t access_size;  // kGasAccessByte...
  uint64_t address;
};
static_assert(sizeof(GenericAddress) == 12);

// ACPI 6.5 table 5.1: Generic Address Structure address spaces and access sizes.
inline constexpr uint8_t kGasSystemMemory = 0;
inline constexpr uint8_t kGasSystemIo = 1;
inline constexpr uint8_t kGasAccessByte = 1;

// The OEM fields of every table kindling writes (and the RSDP's OEM id).
inline constexpr char kOemId[] = "KNDLNG";
inline constexpr char kOemTableId[] = "KINDLING";
inline constexpr uint32_t kOemRevision = 1;
inline constexpr char kCreatorId[] = "KNDL";
inline constexpr uint32_t kCreatorRevision = 1;

// A header with `signature` (four characters), `revision`, `length` and kindling's OEM fields;
// the checksum is left 0.
SdtHeader sdt_header(const char (&signature)[5], uint8_t revision, uint32_t length);

// An 8-bit register at I/O port `port`, accessed a byte at a time.
GenericAddress io_port_register(uint16_t port);

// Sets `bytes[at]` so that all of `bytes` sums to zero.
void fix_checksum(std::span<uint8_t> bytes, size_t at);

// A system description table being built: the header, then whatever is appended; finish()
// fills in the length and the checksum.
class Sdt {
 public:
  // A table with `signature` (four characters) and the revision of its layout.
  Sdt(const char (&signature)[5], uint8_t revision);

  // Appends raw bytes to the body.
  void append(std::span<const uint8_t> bytes);
  // Appends a trivially-copyable on-wire struct or integer (little-endian host).
  template <typename T>
  void append_obj(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    append(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&v), sizeof(T)));
  }
  // The table with its length and checksum set.
  std::vector<uint8_t> finish() const;

 private:
  std::vector<uint8_t> bytes_;
};

}  // namespace kindling::vmm::acpi
