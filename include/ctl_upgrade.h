/*
 * ctl_upgrade.h - the control thread's side of a binary upgrade (SIGUSR2,
 * POST /upgrade): start the new binary (upgrade.h), hand it the listeners
 * and the admin sockets, wait for its "ready" within upgrade_timeout, then
 * stop accepting without shutting the shared sockets down and drain as on
 * SIGTERM. A new process that exits or stays silent is killed and reaped,
 * the reason logged, and this one goes on serving as before.
 */
#ifndef RINGSOCKS_CTL_UPGRADE_H
#define RINGSOCKS_CTL_UPGRADE_H

#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ctl;
struct admin_request;
struct admin_reply;

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
};

/* Fill in the fields main() sets; sock -1. */
void ctl_upgrade_init(struct ctl_upgrade *up, char **argv, const int *listen_fds,
                      unsigned n_listen);
/*
 * Start an upgrade. 0 (started; msg says which pid), -EBUSY (one in
 * progress, or a drain: msg says which), or -errno (msg says why; nothing
 * changed). Logged on stderr either way.
 */
int ctl_upgrade_start(struct ctl *ctl, char *msg, size_t cap);
/* Before poll(): the upgrade socket, if any, into pfd[0]; lowers *timeout_ms. 0 or 1. */
unsigned ctl_upgrade_poll_prepare(struct ctl *ctl, struct pollfd *pfd, int *timeout_ms);
/* After poll() (pfd as prepared, n entries): the new process's answer, or its deadline. */
void ctl_upgrade_poll_done(struct ctl *ctl, const struct pollfd *pfd, unsigned n);
/* Give up an upgrade in progress (a drain began): kill and reap the new process. */
void ctl_upgrade_abort(struct ctl *ctl, const char *why);
/* POST /upgrade: true when rq was it (202, 409, or 500 with the reason). */
bool ctl_upgrade_route(struct ctl *ctl, const struct admin_request *rq, struct admin_reply *out);

#endif
