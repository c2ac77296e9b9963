// Tiny ELF "kernels" for the integration tests: a few bytes of 64-bit code entered at 1 MiB.
#pragma once

#include <string>
#include <vector>

namespace kindling::test {

// Writes a minimal ELF64 "kernel": `code` loaded and entered at 1 MiB. Returns its path.
std::string write_tiny_kernel(const std::string& name, const std::vector<unsigned char>& code);

}  // namespace kindling::test
