/*
 * fault_types.h - what a connection that commits faults (faultspec.h) carries (struct
 * conn's fault), apart from fault.h so that the slot layer can cancel its timer and free it
 * without depending on the faults' code. Types only.
 */
#ifndef RINGSOCKS_FAULT_TYPES_H
#define RINGSOCKS_FAULT_TYPES_H

#include <linux/time_types.h>
#include <stdbool.h>
#include <stdint.h>

#include "faultspec.h"

/* conn_fault.timers: OP_FAULT in flight with argument 0 (handshake, relay direction 0) or 1. */
#define FAULT_TIMER(arg) ((uint8_t)(1u << (arg)))

/* One per connection that asked for a fault or was given one; NULL for every other. */
struct conn_fault {
    struct fault_set asked;         /* by its user name ("-fault-"), for rules allowing them */
    struct fault_set f;             /* what it commits: its rules' and the allowed asked ones */
    uint32_t acted;                 /* bit k: fault k acted (the access log, counted once) */
    uint32_t wait_ms;               /* handshake: sleep this long before the next write (0: none) */
    uint16_t rst_polls;             /* rst_down: send-queue checks so far */
    uint8_t timers;                 /* FAULT_TIMER() bits: OP_FAULT in flight */
    uint8_t replies;                /* request replies queued so far (BIND has two) */
    bool decided;                   /* the request's rule has been asked (fault_request()) */
    int32_t rule;                   /* that rule: another address's rule decides again */
    bool split_on;                  /* the reply being written goes a byte at a time */
    struct __kernel_timespec ts[2]; /* OP_FAULT's timeouts, per argument */
    /* udp_reorder: one datagram held back per direction (udp.c), len 0: none. */
    uint8_t *held[2];
    uint32_t held_len[2], held_cap[2];
};

#endif
