// The largest single allocation made through the global operator new, which boot_tests replaces
// (alloc_probe.cc), so a test can check that a decoder never asked for more than its limit.
#pragma once

#include <cstddef>

namespace kindling::vmm::test {

// Forgets the allocations seen so far.
void reset_largest_allocation();
// Size of the largest operator-new allocation since the last reset.
size_t largest_allocation();

}  // namespace kindling::vmm::test
