/* What the test guest's virtio-blk tests write, where: shared by the guest (C) and the host's
 * integration tests (C++), which check the image after the run holds exactly this and nothing
 * else changed.
 *
 * Every written 512-byte sector is 64 little-endian 64-bit words, word i of sector s being
 * blk_pattern_word(seed, s, i): unique per (seed, sector, word), cheap to make in an emulated
 * guest, and recomputable by the host. `seed` comes from `blk.seed=` (default 1); blk-two writes
 * disk 1 with seed + 1. */
#pragma once

#include <stdint.h>

/* The sector size of the virtio-blk protocol (virtio 1.x, 5.2.6). */
#define BLK_PATTERN_SECTOR 512
#define BLK_PATTERN_WORDS (BLK_PATTERN_SECTOR / 8)

/* Sectors each test writes on disk 0 (first sector, count). Read-only tests write nothing. */
#define BLK_RW_FIRST 0 /* blk-rw: two 8-sector writes, then one 16-sector read */
#define BLK_RW_COUNT 16
#define BLK_MULTI_FIRST 64 /* blk-multi: 8 sectors in 4 data descriptors, 8 in an indirect */
#define BLK_MULTI_COUNT 16 /*   table of 8 descriptors, then 128 sectors in one descriptor */
#define BLK_MULTI_BIG_FIRST 128
#define BLK_MULTI_BIG_COUNT 128
#define BLK_BATCH_FIRST 512 /* blk-batch: blk.batch= (default 16) contiguous 8-sector writes */
#define BLK_BATCH_SECTORS 8
#define BLK_TWO_FIRST 0 /* blk-two: 8 sectors on each disk (seed on vda, seed + 1 on vdb) */
#define BLK_TWO_COUNT 8
#define BLK_IRQ_FIRST 0 /* blk-irq and blk-eof only read; blk-bench writes only when */
                        /* blk.op=write, each request's sectors with the pattern */

/* Word `i` (0..63) of sector `sector` written with `seed`. */
static inline uint64_t blk_pattern_word(uint32_t seed, uint64_t sector, uint32_t i) {
  return ((uint64_t)(seed & 0xFFu) << 56) | ((sector & 0xFFFFFFFFFFull) << 16) | 0xA500u | i;
}
