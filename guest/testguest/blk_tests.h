/* The virtio-blk tests of the test guest, chosen with `test=<name>` like the others. They
 * drive the disks kindling lists as `virtio_mmio.device=` on the command line (the first is
 * vda), and take `blk.seed=N` (pattern seed, default 1), `blk.serial=ID` (blk-id),
 * `blk.batch=N` (blk-batch) and the blk-bench parameters. What they write where is in
 * blk_pattern.h so the host can check the images afterwards. */
#pragma once

#include "tests.h"

/* Write a pattern over several sectors, FLUSH, read it back and compare. */
int blk_rw(struct tg_context* ctx);
/* GET_ID answers the serial (`blk.serial=` when given). */
int blk_id(struct tg_context* ctx);
/* Multi-descriptor, indirect and 64 KiB requests. */
int blk_multi(struct tg_context* ctx);
/* Many requests per notify (the device merges them), each with its own status. */
int blk_batch(struct tg_context* ctx);
/* A read-only disk: RO offered, writes fail with IOERR, nothing changes. */
int blk_ro(struct tg_context* ctx);
/* Interrupts through the I/O APIC, InterruptStatus/ACK, EVENT_IDX suppression. */
int blk_irq(struct tg_context* ctx);
/* Requests past the end of the disk fail with IOERR. */
int blk_eof(struct tg_context* ctx);
/* Two disks written and read together. */
int blk_two(struct tg_context* ctx);
/* `blk.n=` requests of `blk.bs=` bytes at depth `blk.qd=`, `blk.pattern=seq|rand`,
 * `blk.op=read|write`, `blk.irq=0|1` (wait for interrupts, default 1); prints its figures. */
int blk_bench(struct tg_context* ctx);
