/*
 * ctl.c - the control thread: signals, reload, drain, the admin endpoint,
 * and the sums of per-shard counters.
 *
 * Runs on the main thread once the shards are up. It is the RCU writer:
 * a reload builds the new policy snapshot aside (nothing changes if any
 * part fails to load), publishes it with one pointer store, rings every
 * shard so they re-check their tunnels against it, waits for a QSBR grace
 * period (shards are offline while they sleep in io_uring_enter, so this
 * never waits on an idle shard) and frees the old snapshot. It may block on
 * file reads and grace periods, never on a socket: its one wait is the
 * poll() of its loop, over the signalfd, the admin listener and every admin
 * client, bounded by their nearest deadline. Shards never wait for it.
 */
#include "ctl.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include <urcu-qsbr.h>

#include "admin.h"
#include "log.h"
#include "policy.h"
#include "shard.h"

static double
wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
ctl_reload(struct ctl *ctl, char *msg, size_t cap)
{
    struct opts o;
    struct policy *pol = NULL;
    if (ctl->load(ctl->load_arg, &o, &pol, ctl->pol->gen + 1, msg, cap) < 0) {
        ctl->st.reloads_failed++;
        fprintf(stderr, "ringsocks: reload failed, keeping the running configuration:\n%s\n", msg);
        return -1;
    }
    /* What a reload cannot change is reported, not half-applied. */
    const struct opts *was = &ctl->loaded;
    if (o.n_listen != was->n_listen ||
        memcmp(o.listen, was->listen, sizeof(o.listen[0]) * o.n_listen) != 0 ||
        o.relay != was->relay || o.shards != was->shards || o.max_conns != was->max_conns ||
        memcmp(&o.admin, &was->admin, sizeof(o.admin)) != 0 ||
        strcmp(o.admin_hosts, was->admin_hosts) != 0 ||
        strcmp(o.access_log, was->access_log) != 0 || o.log_format != was->log_format ||
        strcmp(o.user, was->user) != 0 || strcmp(o.group, was->group) != 0 ||
        o.pipe_size != was->pipe_size || o.buf_size != was->buf_size ||
        o.buf_count != was->buf_count || o.hs_slots != was->hs_slots ||
        o.busy_poll_us != was->busy_poll_us ||
        o.keepalive_idle_s != was->keepalive_idle_s ||
        o.keepalive_interval_s != was->keepalive_interval_s ||
        o.keepalive_count != was->keepalive_count || o.user_timeout_s != was->user_timeout_s ||
        strcmp(o.resolvers, was->resolvers) != 0)
        fprintf(stderr, "ringsocks: reload: listeners, shards, relay, buffers, resolvers, admin, "
                        "log, keepalive and user settings change only on restart; rules, users, "
                        "timeouts and per-client limits are applied\n");
    struct policy *old = ctl->pol;
    rcu_assign_pointer(ctl->pol, pol);
    for (unsigned i = 0; i < ctl->n_shards; i++)
        shard_wake(&ctl->shards[i]);
    synchronize_rcu();
    policy_free(old);
    ctl->st.reloads_ok++;
    ctl->st.last_reload_ok_time = wall_now();
    snprintf(msg, cap, "reloaded (policy %llu)", (unsigned long long)pol->gen);
    fprintf(stderr, "ringsocks: %s\n", msg);
    return 0;
}

void
ctl_drain(struct ctl *ctl)
{
    if (ctl->draining)
        return;
    ctl->draining = true;
    ctl->st.draining = 1;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    uint64_t deadline = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 +
                        (uint64_t)ctl->o->drain_timeout_s * 1000;
    fprintf(stderr, "ringsocks: draining: no new connections, tunnels have %u s to finish\n",
            ctl->o->drain_timeout_s);
    for (unsigned i = 0; i < ctl->n_shards; i++)
        shard_drain(&ctl->shards[i], deadline);
}

static void
stop_now(struct ctl *ctl)
{
    fprintf(stderr, "ringsocks: stopping now: closing every tunnel\n");
    for (unsigned i = 0; i < ctl->n_shards; i++)
        shard_stop(&ctl->shards[i]);
}

/* --- admin handlers ------------------------------------------------------ */

static size_t
h_metrics(void *arg, char **out)
{
    struct ctl *ctl = arg;
    size_t cap = 64 * 1024;
    /* What the metrics read of each shard: its counters, nothing else. */
    struct metrics_shard ms[ctl->n_shards];
    for (unsigned i = 0; i < ctl->n_shards; i++)
        ms[i] = (struct metrics_shard){ctl->shards[i].id, &ctl->shards[i].st, &ctl->shards[i].n_open};
    ctl->st.log_written = log_written(ctl->lg);
    ctl->st.log_dropped = log_dropped(ctl->lg);
    for (;;) {
        char *buf = malloc(cap);
        if (!buf) {
            *out = NULL;
            return 0;
        }
        size_t n = metrics_render(buf, cap, ms, ctl->n_shards, &ctl->st);
        if (n < cap) {
            *out = buf;
            return n;
        }
        free(buf);
        cap = n + n / 8 + 1; /* counters may grow between two renders */
    }
}

static int
h_reload(void *arg, char *msg, size_t cap)
{
    return ctl_reload(arg, msg, cap);
}

static void
h_drain(void *arg)
{
    ctl_drain(arg);
}

static int
h_health(void *arg, char *msg, size_t cap)
{
    struct ctl *ctl = arg;
    if (ctl->draining) {
        snprintf(msg, cap, "draining");
        return -1;
    }
    return 0;
}

static bool
all_exited(const struct ctl *ctl)
{
    for (unsigned i = 0; i < ctl->n_shards; i++)
        if (!atomic_load_explicit(&ctl->shards[i].exited, memory_order_acquire))
            return false;
    return true;
}

int
ctl_run(struct ctl *ctl)
{
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1);
    ctl->sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (ctl->sfd < 0) {
        perror("ringsocks: signalfd");
        return -1;
    }
    ctl->st.start_time = ctl->st.last_reload_ok_time = wall_now();
    const struct admin_handlers handlers = {
        .arg = ctl,
        .metrics = h_metrics,
        .reload = h_reload,
        .drain = h_drain,
        .health = h_health,
    };

    while (!all_exited(ctl)) {
        struct pollfd pfd[1 + ADMIN_POLL_MAX] = {{.fd = ctl->sfd, .events = POLLIN}};
        unsigned n_admin = 0;
        /* Wake now and then to notice shards that finished draining. */
        int timeout_ms = 200;
        if (ctl->admin)
            n_admin = admin_poll_prepare(ctl->admin, pfd + 1, &timeout_ms);
        if (poll(pfd, 1 + n_admin, timeout_ms) < 0 && errno != EINTR) {
            perror("ringsocks: poll");
            break;
        }
        if (ctl->admin)
            admin_poll_done(ctl->admin, pfd + 1, n_admin, &handlers);
        struct signalfd_siginfo si;
        while (read(ctl->sfd, &si, sizeof(si)) == sizeof(si)) {
            char msg[4096];
            switch (si.ssi_signo) {
            case SIGHUP:
                ctl_reload(ctl, msg, sizeof(msg));
                break;
            case SIGUSR1:
                log_reopen(ctl->lg);
                break;
            default: /* SIGTERM, SIGINT */
                if (ctl->draining)
                    stop_now(ctl);
                else
                    ctl_drain(ctl);
                break;
            }
        }
    }
    close(ctl->sfd);
    return 0;
}
