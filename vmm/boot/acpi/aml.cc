#include "vmm/boot/acpi/aml.h"

#include <initializer_list>
#include <numeric>

namespace kindling::vmm::acpi::aml {

namespace {

// ACPI 6.5 20.2: opcodes and prefixes.
constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0A;
constexpr uint8_t kWordPrefix = 0x0B;
constexpr uint8_t kDWordPrefix = 0x0C;
constexpr uint8_t kStringPrefix = 0x0D;
constexpr uint8_t kQWordPrefix = 0x0E;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kMethodOp = 0x14;
constexpr uint8_t kDualNamePrefix = 0x2E;
constexpr uint8_t kMultiNamePrefix = 0x2F;
constexpr uint8_t kExtOpPrefix = 0x5B;
constexpr uint8_t kDeviceOp = 0x82;  // after kExtOpPrefix
constexpr uint8_t kRootChar = '\\';
constexpr uint8_t kParentPrefixChar = '^';
constexpr uint8_t kNullName = 0x00;
constexpr uint8_t kReturnOp = 0xA4;

// ACPI 6.5 6.4.2 / 6.4.3: resource descriptor tags.
constexpr uint8_t kIrqNoFlagsTag = 0x22;  // small item 0x4, length 2
constexpr uint8_t kIoTag = 0x47;          // small item 0x8, length 7
constexpr uint8_t kEndTag = 0x79;         // small item 0xF, length 1
constexpr uint8_t kMemory32FixedTag = 0x86;
constexpr uint8_t kExtendedInterruptTag = 0x89;

// The largest value a PkgLength of 1, 2, 3 and 4 bytes holds.
constexpr uint32_t kPkgLengthMax[] = {0x3F, 0xFFF, 0xFFFFF, kMaxPkgLength};

// Appends `value` as `n` little-endian bytes.
void put_le(std::vector<uint8_t>& out, uint64_t value, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

// Concatenates encoded parts, keeping the first error among them.
class Assembler {
 public:
  Assembler& raw(std::initializer_list<uint8_t> bytes) {
    out_.insert(out_.end(), bytes);
    return *this;
  }
  Assembler& raw(std::span<const uint8_t> bytes) {
    out_.insert(out_.end(), bytes.begin(), bytes.end());
    return *this;
  }
  template <typename Tag>
  Assembler& add(const Encoded<Tag>& part) {
    if (!part.ok()) {
      if (error_.empty()) error_ = part.error();
    } else {
      raw(part.bytes());
    }
    return *this;
  }
  Assembler& add(const std::vector<Term>& parts) {
    for (const Term& t : parts) add(t);
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return out_; }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  // The assembled bytes as a term or descriptor, or the first error.
  template <typename T>
  T finish() {
    return error_.empty() ? T::of(std::move(out_)) : T::invalid(error_);
  }

 private:
  std::vector<uint8_t> out_;
  std::string error_;
};

// `opcode` PkgLength `body`: the shape of every term that holds a variable-length package.
Term with_pkg_length(std::initializer_list<uint8_t> opcode, Assembler&& body, const char* what) {
  if (!body.ok()) return Term::invalid(body.error());
  std::vector<uint8_t> len = pkg_length_for(body.bytes().size());
  if (len.empty()) {
    return Term::invalid(std::string(what) + ": " + std::to_string(body.bytes().size()) +
                         " bytes do not fit a PkgLength");
  }
  Assembler out;
  out.raw(opcode).raw(len).raw(body.bytes());
  return out.finish<Term>();
}

bool is_lead_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) {
  return is_lead_name_char(c) || (c >= '0' && c <= '9');
}

// Appends one NameSeg (padded with '_' to four characters); false when `seg` is malformed.
bool put_name_seg(std::vector<uint8_t>& out, std::string_view seg) {
  if (seg.empty() || seg.size() > 4 || !is_lead_name_char(seg[0])) return false;
  for (char c : seg) {
    if (!is_name_char(c)) return false;
  }
  out.insert(out.end(), seg.begin(), seg.end());
  out.insert(out.end(), 4 - seg.size(), '_');
  return true;
}

bool is_upper_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}
uint32_t hex_value(char c) {
  return c <= '9' ? static_cast<uint32_t>(c - '0') : static_cast<uint32_t>(c - 'A' + 10);
}

}  // namespace

std::vector<uint8_t> encode_pkg_length(uint32_t value) {
  if (value <= kPkgLengthMax[0]) return {static_cast<uint8_t>(value)};
  for (uint32_t follow = 1; follow <= 3; ++follow) {
    if (value > kPkgLengthMax[follow]) continue;
    // Lead byte: bits 7-6 count the bytes that follow, bits 3-0 are the low nibble; each
    // following byte holds the next 8 bits.
    std::vector<uint8_t> out{static_cast<uint8_t>((follow << 6) | (value & 0xF))};
    for (uint32_t i = 0; i < follow; ++i) out.push_back(static_cast<uint8_t>(value >> (4 + 8 * i)));
    return out;
  }
  return {};
}

std::vector<uint8_t> pkg_length_for(size_t body_size) {
  for (uint32_t n = 1; n <= 4; ++n) {
    if (body_size + n <= kPkgLengthMax[n - 1]) {
      return encode_pkg_length(static_cast<uint32_t>(body_size + n));
    }
  }
  return {};
}

Term name_string(std::string_view path) {
  std::vector<uint8_t> out;
  std::string_view rest = path;
  if (!rest.empty() && rest.front() == '\\') {
    out.push_back(kRootChar);
    rest.remove_prefix(1);
  } else {
    while (!rest.empty() && rest.front() == '^') {
      out.push_back(kParentPrefixChar);
      rest.remove_prefix(1);
    }
  }
  if (rest.empty()) {
    if (out.empty()) return Term::invalid("empty AML name");
    out.push_back(kNullName);
    return Term::of(std::move(out));
  }
  std::vector<uint8_t> segs;
  size_t count = 0;
  for (size_t start = 0;;) {
    const size_t dot = rest.find('.', start);
    const std::string_view seg = rest.substr(start, dot - start);
    if (!put_name_seg(segs, seg)) {
      return Term::invalid("bad AML name segment \"" + std::string(seg) + "\" in \"" +
                           std::string(path) + "\"");
    }
    ++count;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (count > 255) return Term::invalid("AML name \"" + std::string(path) + "\" is too deep");
  if (count == 2) out.push_back(kDualNamePrefix);
  if (count > 2) out.insert(out.end(), {kMultiNamePrefix, static_cast<uint8_t>(count)});
  out.insert(out.end(), segs.begin(), segs.end());
  return Term::of(std::move(out));
}

Term integer(uint64_t value) {
  std::vector<uint8_t> out;
  if (value == 0) {
    out.push_back(kZeroOp);
  } else if (value == 1) {
    out.push_back(kOneOp);
  } else if (value <= 0xFF) {
    out.push_back(kBytePrefix);
    put_le(out, value, 1);
  } else if (value <= 0xFFFF) {
    out.push_back(kWordPrefix);
    put_le(out, value, 2);
  } else if (value <= 0xFFFFFFFF) {
    out.push_back(kDWordPrefix);
    put_le(out, value, 4);
  } else {
    out.push_back(kQWordPrefix);
    put_le(out, value, 8);
  }
  return Term::of(std::move(out));
}

Term string(std::string_view text) {
  std::vector<uint8_t> out{kStringPrefix};
  for (char c : text) {
    const auto b = static_cast<uint8_t>(c);
    if (b == 0 || b > 0x7F) {
      return Term::invalid("AML string \"" + std::string(text) + "\" is not 7-bit ASCII");
    }
    out.push_back(b);
  }
  out.push_back(0);
  return Term::of(std::move(out));
}

bool eisa_id_value(std::string_view id, uint32_t& out) {
  if (id.size() != 7) return false;
  for (int i = 0; i < 3; ++i) {
    if (id[i] < 'A' || id[i] > 'Z') return false;
  }
  for (int i = 3; i < 7; ++i) {
    if (!is_upper_hex(id[i])) return false;
  }
  // Each letter in 5 bits ('A' = 1), big-endian: byte 0 = c1 << 2 | c2 >> 3, byte 1 =
  // (c2 & 7) << 5 | c3; then the product number's two bytes as written.
  const uint32_t c1 = id[0] - '@', c2 = id[1] - '@', c3 = id[2] - '@';
  const uint32_t b0 = (c1 << 2) | (c2 >> 3);
  const uint32_t b1 = ((c2 & 0x7) << 5) | c3;
  const uint32_t b2 = (hex_value(id[3]) << 4) | hex_value(id[4]);
  const uint32_t b3 = (hex_value(id[5]) << 4) | hex_value(id[6]);
  out = b0 | (b1 << 8) | (b2 << 16) | (b3 << 24);
  return true;
}

Term eisa_id(std::string_view id) {
  uint32_t value = 0;
  if (!eisa_id_value(id, value)) return Term::invalid("bad EISA id \"" + std::string(id) + "\"");
  // Always a DWord, as ASL's EISAID() compiles, whatever the value's size.
  std::vector<uint8_t> out{kDWordPrefix};
  put_le(out, value, 4);
  return Term::of(std::move(out));
}

Term name(std::string_view path, const Term& object) {
  Assembler out;
  out.raw({kNameOp}).add(name_string(path)).add(object);
  return out.finish<Term>();
}

Term scope(std::string_view path, const std::vector<Term>& terms) {
  Assembler body;
  body.add(name_string(path)).add(terms);
  return with_pkg_length({kScopeOp}, std::move(body), "Scope");
}

Term device(std::string_view path, const std::vector<Term>& terms) {
  Assembler body;
  body.add(name_string(path)).add(terms);
  return with_pkg_length({kExtOpPrefix, kDeviceOp}, std::move(body), "Device");
}

Term method(std::string_view name, uint8_t args, bool serialized, const std::vector<Term>& terms) {
  if (args > 7) return Term::invalid("Method " + std::string(name) + " with more than 7 args");
  // MethodFlags: bits 0-2 ArgCount, bit 3 SerializeFlag, bits 4-7 SyncLevel (0).
  const auto flags = static_cast<uint8_t>(args | (serialized ? 0x08 : 0));
  Assembler body;
  body.add(name_string(name)).raw({flags}).add(terms);
  return with_pkg_length({kMethodOp}, std::move(body), "Method");
}

Term return_value(const Term& value) {
  Assembler out;
  out.raw({kReturnOp}).add(value);
  return out.finish<Term>();
}

Term package(const std::vector<Term>& elements) {
  if (elements.size() > 255) return Term::invalid("Package with more than 255 elements");
  Assembler body;
  body.raw({static_cast<uint8_t>(elements.size())}).add(elements);
  return with_pkg_length({kPackageOp}, std::move(body), "Package");
}

Term buffer(std::span<const uint8_t> data) {
  Assembler body;
  body.add(integer(data.size())).raw(data);
  return with_pkg_length({kBufferOp}, std::move(body), "Buffer");
}

Term resource_template(const std::vector<Descriptor>& descriptors) {
  Assembler data;
  for (const Descriptor& d : descriptors) data.add(d);
  if (!data.ok()) return Term::invalid(data.error());
  data.raw({kEndTag});
  const uint8_t sum = std::accumulate(data.bytes().begin(), data.bytes().end(), uint8_t{0});
  data.raw({static_cast<uint8_t>(-sum)});
  return buffer(data.bytes());
}

Descriptor memory32_fixed(bool writable, uint32_t base, uint32_t length) {
  // Large item: tag, 16-bit length of what follows (9), information (bit 0: read-write).
  std::vector<uint8_t> out{kMemory32FixedTag, 9, 0, static_cast<uint8_t>(writable ? 1 : 0)};
  put_le(out, base, 4);
  put_le(out, length, 4);
  return Descriptor::of(std::move(out));
}

Descriptor io(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length) {
  // Information bit 0: the device decodes 16 address bits (Decode16).
  std::vector<uint8_t> out{kIoTag, 1};
  put_le(out, min, 2);
  put_le(out, max, 2);
  out.push_back(alignment);
  out.push_back(length);
  return Descriptor::of(std::move(out));
}

Descriptor irq_no_flags(uint32_t irq) {
  if (irq > 15) return Descriptor::invalid("IRQNoFlags for IRQ " + std::to_string(irq));
  std::vector<uint8_t> out{kIrqNoFlagsTag};
  put_le(out, 1u << irq, 2);
  return Descriptor::of(std::move(out));
}

Descriptor extended_interrupt(const InterruptMode& mode, uint32_t gsi) {
  // Flags: bit 0 consumer, bit 1 edge, bit 2 active-low, bit 3 shared; then the table length
  // (1) and the GSI. The 16-bit length counts the bytes after it: flags, count, one DWord.
  const auto flags = static_cast<uint8_t>((mode.consumer ? 0x01 : 0) | (mode.edge ? 0x02 : 0) |
                                          (mode.active_low ? 0x04 : 0) | (mode.shared ? 0x08 : 0));
  std::vector<uint8_t> out{kExtendedInterruptTag, 6, 0, flags, 1};
  put_le(out, gsi, 4);
  return Descriptor::of(std::move(out));
}

}  // namespace kindling::vmm::acpi::aml
