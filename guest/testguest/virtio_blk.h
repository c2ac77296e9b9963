/* A small virtio-mmio (version 2) block driver for the test guest: probe from
 * `virtio_mmio.device=4K@0xd0000000:5` on the command line, negotiate features, one split
 * virtqueue in guest RAM, requests built from segments (direct or indirect descriptors),
 * batched kicks with EVENT_IDX, completion by polling (bounded) or by interrupt. */
#pragma once

#include <linux/virtio_blk.h>
#include <linux/virtio_ring.h>
#include <stdbool.h>
#include <stdint.h>

/* Most virtio-mmio devices the guest drives. */
#define VBLK_MAX_DEVICES 4
/* Largest queue the driver sets up (the device may offer less). */
#define VBLK_MAX_QUEUE 256
/* Most data segments of one request. */
#define VBLK_MAX_SEGS 16

/* One virtio-mmio slot from the command line. */
struct vblk_slot {
  uint64_t base;
  uint32_t size;
  uint32_t gsi;
};

/* One request: header, data segments and status live in guest RAM the device reads/writes. */
struct vblk_req {
  struct virtio_blk_outhdr hdr; /* what the device reads first */
  uint8_t status;               /* the device's last write */
  volatile uint8_t done;        /* set by vblk_reap() */
  uint16_t head;                /* first descriptor of the chain */
  uint32_t used_len;            /* bytes the device reported writing */
  uint64_t user;                /* the caller's tag */
};

/* One data buffer of a request (identity-mapped guest RAM: pointer = guest physical). */
struct vblk_seg {
  void* addr;
  uint32_t len;
};

/* A driven device. */
struct vblk {
  uint64_t base;
  uint32_t gsi;
  uint64_t features; /* negotiated */
  uint64_t offered;  /* what the device offered */
  uint64_t capacity; /* 512-byte sectors */
  uint32_t blk_size;
  uint32_t seg_max;
  uint16_t qsize;
  struct vring_desc* desc;
  struct vring_avail* avail;
  struct vring_used* used;
  struct vring_desc* indirect; /* one table of VBLK_MAX_SEGS + 2 entries per descriptor slot */
  struct vblk_req* owner[VBLK_MAX_QUEUE]; /* request per chain head */
  uint16_t free_head;
  uint16_t num_free;
  uint16_t avail_idx;  /* next avail.idx to publish */
  uint16_t kicked_idx; /* avail.idx at the last kick decision */
  uint16_t last_used;
  uint32_t in_flight;
  uint32_t notifies;            /* QueueNotify writes */
  uint32_t suppressed;          /* kicks skipped because of avail_event / NO_NOTIFY */
  volatile uint32_t interrupts; /* interrupts taken by vblk_irq_handler */
  volatile uint32_t last_isr;   /* InterruptStatus the handler read (and ACKed) */
};

/* Parses every `virtio_mmio.device=` on the command line in order; returns how many. */
int vblk_find_slots(const char* cmdline, struct vblk_slot* slots, int max);

/* Resets the device, negotiates features, sets up queue 0, DRIVER_OK. Returns 0 or prints why
 * and returns -1. `rings` must be page-aligned guest RAM of vblk_ring_bytes(). */
int vblk_init(struct vblk* d, const struct vblk_slot* slot, void* rings);
/* Bytes of guest RAM vblk_init() needs for the rings and indirect tables. */
uint64_t vblk_ring_bytes(void);
/* Resets the device (Status 0). */
void vblk_reset(struct vblk* d);
/* True when `bit` (VIRTIO_*_F_*) was negotiated. */
bool vblk_has(const struct vblk* d, unsigned bit);

/* Fills the request header. */
void vblk_prepare(struct vblk_req* r, uint32_t type, uint64_t sector);
/* Puts a request on the avail ring (not yet visible to the device): header, `nseg` data
 * segments (device-writable for IN and GET_ID), status. `indirect` uses one descriptor that
 * points at a table (needs INDIRECT_DESC). Returns 0, or -1 when the ring is full. */
int vblk_add(struct vblk* d, struct vblk_req* r, const struct vblk_seg* segs, int nseg,
             bool indirect);
/* Publishes everything added and notifies the device when EVENT_IDX / NO_NOTIFY allow it. */
void vblk_kick(struct vblk* d);
/* Takes completed chains off the used ring (marks their requests done); returns how many. */
int vblk_reap(struct vblk* d);
/* Asks for an interrupt after `n` more completions (EVENT_IDX used_event), or for none. */
void vblk_want_interrupt(struct vblk* d, uint16_t after);
void vblk_no_interrupt(struct vblk* d);
/* Polls until `r` completes; false after the bounded wait. */
bool vblk_wait(struct vblk* d, struct vblk_req* r);
/* Adds, kicks and waits for one request; returns its status, or 0xFF on timeout / full ring. */
uint8_t vblk_do(struct vblk* d, struct vblk_req* r, uint32_t type, uint64_t sector, void* buf,
                uint32_t len);

/* The InterruptStatus register, and an InterruptACK write. */
uint32_t vblk_isr(const struct vblk* d);
void vblk_ack(const struct vblk* d, uint32_t bits);
/* Routes the device's GSI through the I/O APIC to `vector` and installs the handler that
 * reads InterruptStatus, ACKs it and counts (`ioapic` from the MP table). */
void vblk_route_irq(struct vblk* d, uint64_t ioapic, int pin, uint8_t vector);
/* Masks the device's I/O APIC pin again. */
void vblk_unroute_irq(struct vblk* d, uint64_t ioapic, int pin);
