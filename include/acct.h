/*
 * acct.h - each user's running state, kept across reloads: the shared
 * counters and buckets of its limits (lim.h), the admin's block, the quota
 * period, and what the accounting export has written so far.
 *
 * The registry (struct acct_reg) is the control thread's: it creates an
 * entry the first time a users file names a user and keeps it for the
 * life of the process (a user removed and added again keeps its counts; the
 * memory is bounded by the names ever loaded). Shards never search it: the
 * policy's users table points each of its users at the entry
 * (users_link()), and a tunnel keeps the pointer; entries are never freed
 * while shards run, so the pointer stays good.
 */
#ifndef RINGSOCKS_ACCT_H
#define RINGSOCKS_ACCT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lim.h"

struct uacct {
    struct lim_node n;      /* written by shards (atomics) */
    atomic_bool blocked;    /* by the admin (POST /users/NAME/block), kept in the state file */
    atomic_bool over_quota; /* set by the control thread: new tunnels get 0x02 */
    char *name;
    /* Control thread only. */
    struct acct_ctl {
        uint64_t bytes[2], opened, hits[LIMH__COUNT]; /* as of the last accounting line */
        uint64_t quota_used;   /* bytes of the current period counted before quota_mark */
        uint64_t quota_mark;   /* n.bytes[0] + n.bytes[1] when quota_used was taken */
        uint32_t quota_period; /* the period's number (days or months since 1970) */
        uint8_t quota_kind;    /* enum lim_period quota_period counts in (NONE: no quota) */
        bool closed_for_quota; /* its tunnels were closed for this period already */
        bool in_users;         /* the current users table names it */
        /* Its effective quota (the users-file line, else user_limits), as of policy q_gen. */
        uint64_t q_bytes; /* 0: none */
        uint8_t q_kind;   /* enum lim_period */
        bool q_close;
        uint64_t q_gen;
        uint32_t metrics_rank; /* its place among the users with a label of their own; 0: none */
    } ctl;
};

struct acct_reg;

struct acct_reg *acct_reg_new(void);
void acct_reg_free(struct acct_reg *r);
/* The user's entry, made (zeroed) if there is none: NULL only when out of memory. */
struct uacct *acct_get(struct acct_reg *r, const char *name);
/* The user's entry, or NULL. */
struct uacct *acct_find(const struct acct_reg *r, const char *name);
/* Entries in order of creation, for walks: i < acct_count(). */
size_t acct_count(const struct acct_reg *r);
struct uacct *acct_at(const struct acct_reg *r, size_t i);

#endif
