/*
 * limit_types.h - what a tunnel under some limit holds (struct conn's lim),
 * apart from limit.h so that the slot layer can give it back without
 * depending on the limits' code. Types only.
 */
#ifndef RINGSOCKS_LIMIT_TYPES_H
#define RINGSOCKS_LIMIT_TYPES_H

#include <linux/time_types.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lim.h"

/* What a tunnel under some limit holds (c->lim; NULL for the others). */
struct conn_lim_bw {
    uint64_t rate[3];            /* bytes/s, 0: none: [0] the tunnel's, [1] the user's, [2] the
                                  * client address's */
    _Atomic uint64_t tunnel_tat; /* the tunnel's own bucket */
    uint64_t ready_ns;           /* a reservation's time (lim_now_ns() clock) */
    uint32_t reserved;           /* bytes reserved, read once ready_ns has come; 0: none */
    uint32_t granted;            /* copy engine: granted to the recv in flight */
    bool on;                     /* some rate is set */
};

struct conn_lim {
    struct lim_node *client; /* the client address's node (a place held), or NULL */
    struct conn_lim_bw bw[2];
    struct __kernel_timespec ts[2]; /* the OP_THROTTLE timers, per direction */
};

#endif
