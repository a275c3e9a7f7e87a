/*
 * ctl.h - the control thread (the main thread once the shards run): owns
 * the signals (signalfd), the admin endpoint, reloads and drains, and the
 * sums of the shards' counters. It never calls shard functions on the data
 * path: it publishes policy snapshots with RCU and rings the shards'
 * eventfds.
 */
#ifndef RINGSOCKS_CTL_H
#define RINGSOCKS_CTL_H

#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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
    struct ctl_upgrade *up; /* SIGUSR2, POST /upgrade (below); NULL: none */
    bool draining;
    int sfd; /* signalfd: SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2 */
};

/*
 * Run until every shard has left its loop (after a drain or stop). Signals:
 * SIGHUP reload, SIGTERM/SIGINT drain (a second one stops at once),
 * SIGUSR1 reopen the access log and the accounting log, SIGUSR2 upgrade
 * the binary (below). Every turn of its
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

/* ---- the binary upgrade (src/ctl_upgrade.c) */

/*
 * The control thread's side of a binary upgrade (SIGUSR2,
 * POST /upgrade): start the new binary (upgrade.h), hand it the listeners
 * and the admin sockets, wait for its "ready" within upgrade_timeout, then
 * stop accepting without shutting the shared sockets down and drain as on
 * SIGTERM. A new process that exits or stays silent is killed and reaped,
 * the reason logged, and this one goes on serving as before.
 */
struct ctl_upgrade {
    /* set by main() before ctl_run() */
    char exe[PATH_MAX];    /* this binary's path at start (upgrade_self_exe()); "": none */
    char **argv;           /* as started: the new process gets the same */
    const int *listen_fds; /* [shard * n_listen + i], the shards' (not owned; open until a drain) */
    unsigned n_listen;
    /* the upgrade in progress */
    int sock;             /* our end of the pair; -1: none in progress */
    pid_t pid;            /* the new process */
    uint64_t deadline_ms; /* CLOCK_MONOTONIC: it must be ready by then */
    bool handed_over;     /* the new one serves: we drain, and leave it the files */
    /* Quota bytes the old process counts after the state file was saved for the new one:
     * acctctl_used() of every user then (registry order), and the socket kept after READY
     * to send the difference at exit (UPGRADE_MSG_USED). */
    uint64_t *used_base;
    size_t used_n;
    int to_new;
    /* In the new process: the old one's socket, open until it sent its quota bytes. */
    int from_old;
};

/* Fill in the fields main() sets; the sockets -1 (main() sets from_old after it). */
void ctl_upgrade_init(struct ctl_upgrade *up, char **argv, const int *listen_fds,
                      unsigned n_listen);
/*
 * Start an upgrade. 0 (started; msg says which pid), -EBUSY (one in
 * progress, or a drain: msg says which), or -errno (msg says why; nothing
 * changed). Logged on stderr either way.
 */
int ctl_upgrade_start(struct ctl *ctl, char *msg, size_t cap);
/*
 * Before poll(): the socket of an upgrade in progress and the one from the old
 * process, if any, into pfd (room for CTL_UPGRADE_POLL_MAX); lowers
 * *timeout_ms. Returns how many.
 */
#define CTL_UPGRADE_POLL_MAX 2
unsigned ctl_upgrade_poll_prepare(struct ctl *ctl, struct pollfd *pfd, int *timeout_ms);
/* After poll() (pfd as prepared, n entries): the new process's answer, or its deadline. */
void ctl_upgrade_poll_done(struct ctl *ctl, const struct pollfd *pfd, unsigned n);
/* Give up an upgrade in progress (a drain began): kill and reap the new process. */
void ctl_upgrade_abort(struct ctl *ctl, const char *why);
/*
 * main(), after the shards stopped (every byte counted), before ctl_finish():
 * after a hand-over, send the new process the quota bytes each user used
 * here since the upgrade began, so its quotas lose nothing.
 */
void ctl_upgrade_finish(struct ctl *ctl);
/* POST /upgrade: true when rq was it (202, 409, or 500 with the reason). */
bool ctl_upgrade_route(struct ctl *ctl, const struct admin_request *rq, struct admin_reply *out);

#endif
