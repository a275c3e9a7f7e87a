/*
 * ctl.h - the control thread (the main thread once the shards run): owns
 * the signals (signalfd), the admin endpoint, reloads and drains, and the
 * sums of the shards' counters. It never calls shard functions on the data
 * path: it publishes policy snapshots with RCU and rings the shards'
 * eventfds.
 */
#ifndef RINGSOCKS_CTL_H
#define RINGSOCKS_CTL_H

#include <stdbool.h>
#include <stddef.h>

#include "admin.h"
#include "conn_end.h"
#include "metrics.h"
#include "opts.h"

struct shard;
struct policy;
struct logger;
struct admin;
struct admin_request;
struct admin_reply;
struct uacct;
struct climap;
struct acctctl;
struct ctl_upgrade;
struct fleet;

/* Builds the reloadable settings: defaults, then the file, then the command line. */
typedef int (*ctl_load_fn)(void *arg, struct opts *o, struct policy **pol, uint64_t gen, char *err,
                           size_t errlen);

struct ctl {
    const struct opts *o; /* the settings the process runs with (ports bound, shards counted) */
    struct opts loaded;   /* as loaded (before auto values were filled in), with the values of
                            * the last reload where one applies them: what a reload is compared
                            * with */
    struct shard *shards;
    unsigned n_shards;
    struct policy *pol; /* published: shards read it through RCU */
    struct logger *lg;
    struct admin *admin;      /* on TCP; NULL: none */
    struct admin *admin_unix; /* on a Unix socket; NULL: none */
    struct acct_reg *reg;     /* users' running state (acct.h), kept across reloads */
    struct climap *climap;    /* client addresses' limit counters (climap.h): swept here */
    uint64_t climap_swept_ms;
    struct acctctl *acct; /* quotas, the state file, accounting (acctctl.h); NULL: none */
    struct fleet *fleet;  /* a fleet's Redis (fleet.h); NULL: none */
    ctl_load_fn load;
    void *load_arg;
    struct ctl_stats st;
    struct ctl_upgrade *up; /* SIGUSR2, POST /upgrade (ctl_upgrade.h); NULL: none */
    bool draining;
    int sfd; /* signalfd: SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2 */
};

/*
 * Run until every shard has left its loop (after a drain or stop). Signals:
 * SIGHUP reload, SIGTERM/SIGINT drain (a second one stops at once),
 * SIGUSR1 reopen the access log and the accounting log, SIGUSR2 upgrade
 * the binary (ctl_upgrade.h). Every turn of its
 * loop (at least every 200 ms) it checks the users' quotas and writes the
 * state file and the accounting lines when they are due. Returns 0.
 */
int ctl_run(struct ctl *ctl);
/*
 * Build and publish a new policy; on failure keep the old one. 0 with the
 * report in msg ("reloaded (policy N): applied: ...; needs a restart: ...;
 * users added: ...; users removed: ...; tunnels revoked: N"), also written
 * to stderr, or -1 with the errors in msg.
 */
int ctl_reload(struct ctl *ctl, char *msg, size_t cap);
/* Start draining every shard (idempotent). */
void ctl_drain(struct ctl *ctl);
/*
 * Close every open tunnel of user a, on every shard, with the reason why;
 * *closed gets how many. 0 or -errno. (src/ctl_conns.c.)
 */
int ctl_disconnect_user(struct ctl *ctl, struct uacct *a, enum conn_end why, unsigned *closed);
/*
 * Write the state file now (acctctl.h), e.g. after an admin block or
 * unblock: 0 (also when there is no state file) or -errno, said on stderr.
 */
int ctl_state_save(struct ctl *ctl);
/* main(), after the shards stopped and were joined: the last accounting lines and state file. */
void ctl_finish(struct ctl *ctl);
/*
 * Admin routes (api.md), called by the dispatcher of the paths beyond the
 * fixed four: true when the route answered into *out. GET /users and
 * GET /users/NAME (src/ctl_users.c).
 */
bool ctl_users_route(struct ctl *ctl, const struct admin_request *rq, struct admin_reply *out);

/*
 * Close every tunnel of user a on every shard with reason why (END_ADMIN,
 * END_BLOCKED, END_QUOTA): a tunnel counts as a's when its c->acct is a, or
 * (c->acct NULL) its base user name is a->name. Waits up to
 * SHARDCMD_WAIT_MS (shardcmd.h) for the shards. *closed: how many closed.
 * 0, or -ETIMEDOUT when a shard did not answer in time (its tunnels may
 * close later, or stay). Control thread.
 */
int ctl_disconnect_user(struct ctl *ctl, struct uacct *a, enum conn_end why, unsigned *closed);
/* Write the state file (blocked users, quotas) now. 0 or -errno. Control thread. */
int ctl_state_save(struct ctl *ctl);

/*
 * The admin routes of ctl_conns.c (GET /connections, POST
 * /connections/ID/close, POST /users/NAME/disconnect|block|unblock): true
 * when rq was one of them and *out holds the answer. Control thread.
 */
bool ctl_conns_route(struct ctl *ctl, const struct admin_request *rq, struct admin_reply *out);

#endif
