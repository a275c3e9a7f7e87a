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
