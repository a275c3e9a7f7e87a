/*
 * acctctl.h - what the control thread does with the users' running state
 * (acct.h): traffic quotas per period (day, month, total) and the flag the
 * shards' request checks read (uacct.over_quota); the state file that keeps
 * quota counts and admin blocks across restarts; the accounting export (one
 * JSON line per user and interval); the per-user Prometheus series with
 * their cap.
 *
 * Control thread only (and main() before the shards start): it reads the
 * shards' counters with relaxed atomic loads and writes only uacct.ctl and
 * uacct.over_quota. It writes files, so it must never run on a shard.
 */
#ifndef RINGSOCKS_ACCTCTL_H
#define RINGSOCKS_ACCTCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lim.h"

struct acct_reg;
struct uacct;
struct opts;
struct policy;
struct metrics_user;

/* ---- pure parts */

/*
 * The number of the quota period t falls in, in UTC: days since 1970-01-01
 * (LIM_PERIOD_DAY), months since 1970-01 (LIM_PERIOD_MONTH), 0 for
 * LIM_PERIOD_TOTAL and LIM_PERIOD_NONE.
 */
uint32_t acctctl_period(enum lim_period p, time_t t);
/* "day", "month", "total", "none". */
const char *acctctl_period_str(enum lim_period p);
/* Bytes a counts against its quota in the current period: quota_used + bytes since quota_mark. */
uint64_t acctctl_used(const struct uacct *a);
/*
 * The user's effective limits: its users-file line (users_info()) over the
 * policy's user_limits; a name the users table lacks has user_limits alone.
 */
void acctctl_limits(const struct policy *pol, const char *name, struct lim_conf *out);

/* A growing text buffer; oom is set (and the text cut) when memory runs out. */
struct acctctl_buf {
    char *p;
    size_t len, cap;
    bool oom;
};
void acctctl_printf(struct acctctl_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * s as a JSON string, quoted, like the access log's JSON (log.h): '"' and
 * '\' backslash-escaped, bytes < 0x20, 0x7f and >= 0x80 as \u00XX (byte N as
 * U+00NN: the output is ASCII and the exact bytes can be recovered).
 */
void acctctl_json_str(struct acctctl_buf *b, const char *s);

/*
 * The state file (see docs/operations.md, "quotas"): a first line
 * "ringsocks-state 1", then one line per user with a quota or a block,
 *     NAME KIND PERIOD USED BLOCKED
 * NAME percent-encoded (bytes <= 0x20, '%', 0x7f and >= 0x80 as %XX), KIND
 * day|month|total|none, PERIOD its number (acctctl_period()), USED bytes
 * counted in it, BLOCKED 0 or 1. '#' lines and blank lines are ignored.
 */
/*
 * Read path into reg: each line's user (made with acct_get() if new) gets
 * its quota period, bytes used and block. A missing file is an empty one.
 * 0, or -1 with "FILE:LINE: reason" (or "FILE: reason") in err; on error
 * some users may have been set already (the caller refuses to start).
 */
int acctctl_state_read(const char *path, struct acct_reg *reg, char *err, size_t errlen);
/* Write reg's state to path atomically (temp file, fsync, rename, fsync dir). 0 or -errno. */
int acctctl_state_write(const char *path, const struct acct_reg *reg);

/*
 * Roll a into the period its effective quota (a->ctl.q_*) counts in now
 * (days: the day number of wall, ...): a new period, or a new kind, starts
 * at 0. Then set over_quota; returns true when a has just gone over a
 * quota with quota_close and its tunnels are to be closed (once per
 * period, or again after it came back under).
 */
bool acctctl_quota_check(struct uacct *a, const uint32_t period_now[4]);
/* period_now[k] = acctctl_period(k, wall) for every enum lim_period k. */
void acctctl_periods(time_t wall, uint32_t period_now[4]);

/*
 * One accounting line per user of reg with activity since the last one
 * (bytes, tunnels opened, limit hits) or tunnels open now, into b; the
 * users' acct_ctl values move on to the current ones, so the lines of a run
 * add up exactly to what was counted. wall: the line's time; interval_s:
 * the seconds it covers. Returns the number of lines.
 */
size_t acctctl_export(const struct acct_reg *reg, time_t wall, unsigned interval_s,
                      struct acctctl_buf *b);

/*
 * The per-user series for Prometheus: at most max users get a label of
 * their own, and keep it until the process ends (a sticky set, filled in
 * registry order by users with any activity, so their counters and the sum
 * of the rest stay monotonic as long as the set does not change its size);
 * everyone else is summed into one entry named NULL ("other"), the last
 * one, present when some user is left out. *out is malloc'ed (the caller
 * frees it); returns the number of entries, or 0 with *out NULL when max is
 * 0 or out of memory. *next_rank carries the set's size between calls.
 */
size_t acctctl_metrics_users(const struct acct_reg *reg, unsigned max, uint32_t *next_rank,
                             struct metrics_user **out);

/* ---- the control thread's part */

struct acctctl;

/*
 * Main thread, after the privilege drop and before the shards start: read
 * the state file (o->state_file, if set) into reg, write it back once (so a
 * directory the service user cannot write fails the start, not a later
 * save), open the accounting log (o->accounting_log unless "off"), and warn
 * on stderr when pol has a quota but there is no state file. NULL with the
 * reason in err when any of that fails.
 */
struct acctctl *acctctl_new(const struct opts *o, const struct policy *pol, struct acct_reg *reg,
                            char *err, size_t errlen);
/* Close the accounting log and free ac; NULL is fine. */
void acctctl_free(struct acctctl *ac);

/*
 * Every turn of the control loop (at least every 200 ms): the quotas of
 * every user (their effective quota is recomputed when pol's generation
 * changed), then the state file and the accounting lines when they are
 * due (pol->state_interval_s, pol->accounting_interval_s). For each user
 * that has just gone over a quota with quota_close, over(arg, user) is
 * called (ctl closes its tunnels).
 */
void acctctl_tick(struct acctctl *ac, const struct policy *pol,
                  void (*over)(void *arg, struct uacct *a), void *arg);
/* The state file now (after an admin block or unblock). 0, or -errno (said on stderr). */
int acctctl_save(struct acctctl *ac);
/*
 * After a binary upgrade handed over (ctl.h, the upgrade): the state file is the
 * new process's from now on; this one never writes it again (what it counts
 * after the save that began the upgrade goes to the new process at its exit:
 * ctl_upgrade_finish()).
 */
void acctctl_state_release(struct acctctl *ac);
/*
 * Add bytes to a's count of its current quota period (a binary upgrade: what
 * the old process counted), its effective quota taken from pol and its period
 * rolled first. Control thread.
 */
void acctctl_add_used(const struct policy *pol, struct uacct *a, uint64_t bytes);
/* SIGUSR1: reopen the accounting log (the old one stays when that fails); says so on stderr. */
void acctctl_reopen(struct acctctl *ac);
/*
 * After the shards stopped (every byte counted): the last quota check,
 * accounting lines and state file.
 */
void acctctl_finish(struct acctctl *ac, const struct policy *pol);
/* The per-user series (acctctl_metrics_users()) with pol->metrics_users as the cap. */
size_t acctctl_metrics(struct acctctl *ac, const struct policy *pol, struct metrics_user **out);

#endif
