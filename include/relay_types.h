/*
 * relay_types.h - the relay's state: per direction of a tunnel (embedded in
 * struct conn, next to its slot) and per shard (the copy engine's buffer
 * ring, its starvation queue, the write-stall list, the pipe pool). Owned by
 * relay.c; others read only relay_dir.bytes (the access log, the metrics).
 */
#ifndef RINGSOCKS_RELAY_TYPES_H
#define RINGSOCKS_RELAY_TYPES_H

#include <stdint.h>

#include "pipe.h"
#include "udq.h"

enum {
    DIR_C2T = 0, /* client -> target */
    DIR_T2C = 1, /* target -> client */
};

/* Relay direction flags. */
#define RD_EOF        0x01u /* source said EOF */
#define RD_DONE       0x02u /* EOF forwarded as shutdown(SHUT_WR) */
#define RD_POLLOUT    0x04u /* destination full: wait for POLLOUT before writing */
/* readable: the poll said so (splice: or the last read filled the pipe) */
#define RD_FULL       0x08u
#define RD_HOLD_BUF   0x10u  /* copy: holds provided buffer bid */
#define RD_STARVED    0x20u  /* copy: queued for a provided buffer */
#define RD_SPLICE     0x40u  /* this direction relays with splice (else copy) */
#define RD_SMALL_PIPE 0x80u  /* splice: the pipe kept its default size (F_SETPIPE_SZ refused) */
#define RD_WAIT_DATA  0x100u /* copy: no buffer, and no data known: a poll before the next recv */
#define RD_SPILLED    0x200u /* copy: the pending bytes are in the direction's own memory (spill) */
#define RD_STALLED    0x400u /* on the shard's write-stall list: pending bytes wait for POLLOUT */
#define RD_BULK       0x800u /* splice: the last readiness filled a pipe: next time a large one */
#define RD_BIG_PIPE   0x1000u /* splice: holds a large pipe (pipe_size_max) */

struct relay_dir {
    int pipe_r, pipe_w; /* splice: pipe from the pool, -1 when none */
    uint32_t pending;   /* bytes read but not yet written (in the pipe, buffer or spill) */
    uint32_t off;       /* copy: bytes of the buffer (or spill) already sent */
    uint16_t bid;       /* copy: provided buffer id while RD_HOLD_BUF */
    uint8_t ops;        /* operations in flight for this direction */
    uint16_t flags;     /* RD_* */
    uint64_t bytes;     /* forwarded to the destination */
    uint8_t *spill;     /* copy, RD_SPILLED: off + pending bytes of our own, freed when drained */
    /* Write-stall list (RD_STALLED): node slot << 1 | dir, oldest stamp first. */
    uint32_t sprev, snext;
    uint32_t stall_ds; /* shard deciseconds: since then no pending byte was written */
};

struct io_uring_buf_ring;

struct relay_shard {
    /* copy engine: provided buffer ring */
    struct io_uring_buf_ring *br;
    uint8_t *bufs;
    unsigned br_mask;
    uint32_t bufs_held; /* buffers the kernel handed to a recv and that are not back yet */
    /* buffers in the ring that directions woken in this batch will take (their recvs are
     * not submitted yet); relay_batch_end() wakes no one else for them, and resets it */
    uint32_t bufs_promised;
    struct udq starved; /* directions waiting for a buffer: conn_ref(c, dir) */
    /* Directions whose pending bytes wait for a full destination, either engine, by the
     * time they last wrote (struct relay_dir sprev/snext); write_timeout. */
    uint32_t stall_head, stall_tail;
    struct pipe_pool pipes;
};

#endif
