// The Extended System Description Table: the list of every other table's address (except the
// DSDT, which the FADT points at).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace kindling::vmm::acpi {

// ACPI 6.5 5.2.8: Extended System Description Table (header + 64-bit table addresses).
class Xsdt {
 public:
  // Revision of the XSDT layout.
  static constexpr uint8_t kRevision = 1;

  // An XSDT listing the tables at `entries`, in order.
  explicit Xsdt(std::vector<uint64_t> entries) : entries_(std::move(entries)) {}
  // The table, length and checksum set.
  std::vector<uint8_t> bytes() const;

 private:
  std::vector<uint64_t> entries_;
};

}  // namespace kindling::vmm::acpi
