// A small builder of ACPI Machine Language (ACPI 6.5 chapter 20) for the DSDT: each function
// encodes one term from already-encoded parts, so terms compose the way ASL nests them:
//
//   scope("\\_SB_", {device("COM1", {name("_HID", eisa_id("PNP0501")), ...})})
//
// Only what kindling's DSDT needs: Name, Scope, Device, a simple Method and Return, Package,
// Buffer, integers, strings, EISA ids, and a ResourceTemplate of Memory32Fixed, IO, IRQNoFlags
// and Extended Interrupt descriptors. A term built from a bad input (a malformed name, a string
// with a NUL, too many package elements) carries an error instead of bytes, and every term built
// from it carries that error on, so the table builder reports it once at the top.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kindling::vmm::acpi::aml {

// Encoded bytes, or the reason they could not be encoded. `Tag` keeps AML terms and resource
// descriptors (which only a ResourceTemplate takes) apart.
template <typename Tag>
class Encoded {
 public:
  // Bytes that encode correctly.
  static Encoded of(std::vector<uint8_t> bytes) {
    Encoded e;
    e.bytes_ = std::move(bytes);
    return e;
  }
  // A failed encoding and why.
  static Encoded invalid(std::string why) {
    Encoded e;
    e.error_ = std::move(why);
    return e;
  }

  // True when the bytes are valid.
  bool ok() const { return error_.empty(); }
  // The encoding; empty when !ok().
  const std::vector<uint8_t>& bytes() const { return bytes_; }
  // Why the encoding failed; empty when ok().
  const std::string& error() const { return error_; }

 private:
  Encoded() = default;
  std::vector<uint8_t> bytes_;
  std::string error_;
};

// An AML term (object, named object or data) that can go in a term list or a package.
using Term = Encoded<struct TermTag>;
// One resource descriptor (ACPI 6.5 6.4) for resource_template().
using Descriptor = Encoded<struct DescriptorTag>;

// Largest value a PkgLength can encode (28 bits).
inline constexpr uint32_t kMaxPkgLength = (1u << 28) - 1;

// ACPI 6.5 20.2.4: the 1-4 byte PkgLength encoding of `value` (which counts the PkgLength bytes
// themselves). Empty when `value` > kMaxPkgLength.
std::vector<uint8_t> encode_pkg_length(uint32_t value);
// The PkgLength that precedes `body_size` bytes of package contents: the shortest encoding whose
// value (body plus its own bytes) it can hold. Empty when that exceeds kMaxPkgLength.
std::vector<uint8_t> pkg_length_for(size_t body_size);

// ACPI 6.5 20.2.2: a NameString. `path` is an optional root prefix '\' or parent prefixes '^'
// followed by '.'-separated segments of 1-4 characters ([A-Z_] then [A-Z0-9_]), each padded
// with '_' to four ("_SB" is "_SB_").
Term name_string(std::string_view path);

// ACPI 6.5 20.2.3: the smallest integer encoding of `value`: ZeroOp, OneOp, or a Byte, Word,
// DWord or QWord constant.
Term integer(uint64_t value);
// ACPI 6.5 20.2.3: a String constant (ASCII 0x01-0x7F, NUL-terminated).
Term string(std::string_view text);
// The 32-bit compressed EISA id of `id` ("PNP0501" is 0x0105D041): three letters A-Z, four
// upper-case hex digits. Returns false when `id` is not of that form.
bool eisa_id_value(std::string_view id, uint32_t& out);
// EISAID("id") as ASL compiles it: a DWord constant of eisa_id_value().
Term eisa_id(std::string_view id);

// ACPI 6.5 20.2.5.1: Name(path, object).
Term name(std::string_view path, const Term& object);
// ACPI 6.5 20.2.5.1: Scope(path) { terms }.
Term scope(std::string_view path, const std::vector<Term>& terms);
// ACPI 6.5 20.2.5.2: Device(path) { terms }.
Term device(std::string_view path, const std::vector<Term>& terms);
// ACPI 6.5 20.2.5.2: Method(name, args (0-7), Serialized or NotSerialized) { terms }.
Term method(std::string_view name, uint8_t args, bool serialized, const std::vector<Term>& terms);
// ACPI 6.5 20.2.5.3: Return(value).
Term return_value(const Term& value);
// ACPI 6.5 20.2.5.4: Package() { elements } (at most 255 elements).
Term package(const std::vector<Term>& elements);
// ACPI 6.5 20.2.5.4: Buffer() { data }, its size as an integer.
Term buffer(std::span<const uint8_t> data);

// ACPI 6.5 6.4.1 / 6.4.2.9: ResourceTemplate() { descriptors }: a Buffer of the descriptors
// and an End Tag whose checksum makes the buffer's bytes sum to zero.
Term resource_template(const std::vector<Descriptor>& descriptors);

// ACPI 6.5 6.4.3.4: Memory32Fixed(ReadWrite or ReadOnly, base, length).
Descriptor memory32_fixed(bool writable, uint32_t base, uint32_t length);
// ACPI 6.5 6.4.2.5: IO(Decode16, min, max, alignment, length).
Descriptor io(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length);
// ACPI 6.5 6.4.2.1: IRQNoFlags() { irq } (ISA IRQ 0-15: edge, active-high, exclusive).
Descriptor irq_no_flags(uint32_t irq);

// The mode of an Extended Interrupt descriptor.
struct InterruptMode {
  bool consumer = true;     // ResourceConsumer (else ResourceProducer)
  bool edge = true;         // Edge (else Level)
  bool active_low = false;  // ActiveLow (else ActiveHigh)
  bool shared = false;      // Shared (else Exclusive)
};
// ACPI 6.5 6.4.3.6: Interrupt(mode...) { gsi }: one GSI, no resource source.
Descriptor extended_interrupt(const InterruptMode& mode, uint32_t gsi);

}  // namespace kindling::vmm::acpi::aml
