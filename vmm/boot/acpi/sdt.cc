#include "vmm/boot/acpi/sdt.h"

#include <cstring>

#include "vmm/boot/table_bytes.h"

namespace kindling::vmm::acpi {

GenericAddress io_port_register(uint16_t port) {
  GenericAddress gas{};
  gas.space_id = kGasSystemIo;
  gas.bit_width = 8;
  gas.bit_offset = 0;
  gas.access_size = kGasAccessByte;
  gas.address = port;
  return gas;
}

void fix_checksum(std::span<uint8_t> bytes, size_t at) {
  bytes[at] = 0;
  bytes[at] = table_checksum(bytes);
}

SdtHeader sdt_header(const char (&signature)[5], uint8_t revision, uint32_t length) {
  SdtHeader hdr{};
  std::memcpy(hdr.signature, signature, sizeof(hdr.signature));
  hdr.length = length;
  hdr.revision = revision;
  std::memcpy(hdr.oem_id, kOemId, sizeof(hdr.oem_id));
  std::memcpy(hdr.oem_table_id, kOemTableId, sizeof(hdr.oem_table_id));
  hdr.oem_revision = kOemRevision;
  std::memcpy(hdr.creator_id, kCreatorId, sizeof(hdr.creator_id));
  hdr.creator_revision = kCreatorRevision;
  return hdr;
}

Sdt::Sdt(const char (&signature)[5], uint8_t revision) {
  append_obj(sdt_header(signature, revision, 0));
}

void Sdt::append(std::span<const uint8_t> bytes) {
  bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
}

std::vector<uint8_t> Sdt::finish() const {
  std::vector<uint8_t> out = bytes_;
  const auto length = static_cast<uint32_t>(out.size());
  std::memcpy(out.data() + offsetof(SdtHeader, length), &length, sizeof(length));
  fix_checksum(out, offsetof(SdtHeader, checksum));
  return out;
}

}  // namespace kindling::vmm::acpi
