/*
 * watchdog.h - the shard loop's stall watch. A shard publishes when its
 * current work began (busy_since, CLOCK_MONOTONIC_COARSE ms, 0 while it sleeps
 * in io_uring_submit_and_wait). An iteration whose work lasted over
 * WATCHDOG_STALL_MS is a stall; each stalled episode is counted once, either
 * by the shard when the work ends (watchdog_end) or, while it still has not
 * ended, by the control thread on its tick (watchdog_check), which tags the
 * episode so the shard does not count it again. The functions take the clock
 * as an argument (tests pass a fake one).
 */
#ifndef RINGSOCKS_WATCHDOG_H
#define RINGSOCKS_WATCHDOG_H

#include <stdbool.h>
#include <stdint.h>

#define WATCHDOG_STALL_MS 100
/* Set in busy_since by the control thread: this episode is counted. */
#define WATCHDOG_CLAIMED  (UINT64_C(1) << 63)

/* CLOCK_MONOTONIC_COARSE in ms: the clock of busy_since (a vDSO read, no syscall). */
uint64_t watchdog_now_ms(void);

/* Shard: work begins at now_ms (nonzero). A plain store. */
void watchdog_begin(_Atomic uint64_t *busy_since, uint64_t now_ms);

/*
 * Shard: the work that began at start_ms ends at now_ms; busy_since goes back to 0.
 * Raises *max_ms to the work's length. True when the shard must count a stall: the
 * work lasted over WATCHDOG_STALL_MS and the control thread has not counted it.
 */
bool watchdog_end(_Atomic uint64_t *busy_since, uint64_t start_ms, uint64_t now_ms,
                  uint64_t *max_ms);

/* Control thread: true (once per episode) when the shard's work began over
 * WATCHDOG_STALL_MS before now_ms and has not ended. */
bool watchdog_check(_Atomic uint64_t *busy_since, uint64_t now_ms);

#endif
