// Replaces the global operator new of the boot_tests binary to remember the largest request.
#include "alloc_probe.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace kindling::vmm::test {
namespace {
std::atomic<size_t> largest{0};
}  // namespace

void reset_largest_allocation() {
  largest.store(0);
}

size_t largest_allocation() {
  return largest.load();
}

}  // namespace kindling::vmm::test

void* operator new(size_t size) {
  size_t seen = kindling::vmm::test::largest.load();
  while (size > seen && !kindling::vmm::test::largest.compare_exchange_weak(seen, size)) {
  }
  if (void* p = std::malloc(size != 0 ? size : 1)) return p;
  throw std::bad_alloc();
}

void operator delete(void* p) noexcept {
  std::free(p);
}

void operator delete(void* p, size_t) noexcept {
  std::free(p);
}
