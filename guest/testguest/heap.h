/* A bump allocator over the guest RAM after the test guest's image (from the e820 map in
 * boot_params): buffers for the virtio rings and request data, identity-mapped so a pointer is
 * also the guest-physical address the device sees. Nothing is ever freed. */
#pragma once

#include <asm/bootparam.h>
#include <stdint.h>

/* Finds the RAM range holding the image's end; allocations come from there. */
void heap_init(const struct boot_params* bp);
/* `bytes` aligned to `align` (a power of two), or NULL when RAM runs out. Not zeroed. */
void* heap_alloc(uint64_t bytes, uint64_t align);
/* Bytes still free. */
uint64_t heap_left(void);
