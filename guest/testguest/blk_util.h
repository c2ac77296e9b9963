/* What the virtio-blk tests share: opening the N-th disk from the command line, parameters,
 * the deterministic data pattern (blk_pattern.h) and its check. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tests.h"
#include "virtio_blk.h"

/* Finds the `index`-th virtio_mmio.device slot, sets up the device (rings from the heap) and
 * prints what it found; 0, or -1 after printing why. */
int blk_open(struct tg_context* ctx, int index, struct vblk* d);
/* The I/O APIC pin and base address for the device's GSI (from the MP table). */
int blk_irq_pin(const struct tg_context* ctx, const struct vblk* d);
uint64_t blk_ioapic(const struct tg_context* ctx);
/* `blk.<key>=N` from the command line, or `def`. */
long blk_param(const struct tg_context* ctx, const char* key, long def);
/* `blk.seed=` (default 1). */
uint32_t blk_seed(const struct tg_context* ctx);

/* Fills `sectors` sectors of buf with the pattern of (seed, first sector onwards). */
void blk_fill(void* buf, uint32_t seed, uint64_t first, uint32_t sectors);
/* Checks buf against the pattern; returns -1 when it matches, else the first bad sector. */
int64_t blk_check(const void* buf, uint32_t seed, uint64_t first, uint32_t sectors);
/* Sets `bytes` (a multiple of 8) of buf to a filler that matches no pattern. */
void blk_poison(void* buf, uint32_t bytes);
/* Page-aligned heap buffer, or NULL after printing why. */
void* blk_buffer(uint64_t bytes);

/* One line `testguest: <test>: FAIL <why>` and TG_FAIL. */
int blk_fail(const char* test, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
/* Checks a request's status against the expected one (prints on mismatch). */
bool blk_expect(const char* test, const char* what, uint8_t got, uint8_t want);
