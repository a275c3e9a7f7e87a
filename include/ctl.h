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

#include "metrics.h"
#include "opts.h"

struct shard;
struct policy;
struct logger;
struct admin;
struct climap;

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
    ctl_load_fn load;
    void *load_arg;
    struct ctl_stats st;
    bool draining;
    int sfd; /* signalfd: SIGHUP, SIGTERM, SIGINT, SIGUSR1 */
};

/*
 * Run until every shard has left its loop (after a drain or stop). Signals:
 * SIGHUP reload, SIGTERM/SIGINT drain (a second one stops at once),
 * SIGUSR1 reopen the access log. Returns 0.
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

#endif
