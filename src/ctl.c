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

#include "acct.h"
#include "acctctl.h"
#include "caps.h"
#include "fleet.h"
#include "gssw.h"
#include "admin.h"
#include "climap.h"
#include "log.h"
#include "notify.h"
#include "options.h"
#include "policy.h"
#include "relay.h"
#include "shard.h"
#include "users.h"
#include "watchdog.h"

static double
wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The names listed in a report line; the rest are counted. */
#define CTL_NAMES_SHOWN 8

/*
 * "users added: a, b; users removed: c; " for the user tables before and
 * after (both in strcmp() order, so one merge walk finds both lists).
 */
static void
users_diff(const struct users *was, const struct users *now, char *buf, size_t cap, size_t *used)
{
    for (int pass = 0; pass < 2; pass++) {
        const struct users *a = pass ? was : now, *b = pass ? now : was;
        size_t i = 0, j = 0, n = 0;
        for (const char *x; (x = users_name(a, i)); i++) {
            const char *y;
            int cmp = 1;
            while ((y = users_name(b, j)) && (cmp = strcmp(y, x)) < 0)
                j++;
            if (y && cmp == 0)
                continue;
            if (n < CTL_NAMES_SHOWN)
                options_append(buf, cap, used, "%s%s",
                               n      ? ", "
                               : pass ? "users removed: "
                                      : "users added: ",
                               x);
            n++;
        }
        if (n > CTL_NAMES_SHOWN)
            options_append(buf, cap, used, " and %zu more", n - CTL_NAMES_SHOWN);
        if (n)
            options_append(buf, cap, used, "; ");
    }
}

/* Tunnels every shard has closed for reloads since it started (counted as it closes them). */
static uint64_t
revoked_total(const struct ctl *ctl)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < ctl->n_shards; i++)
        n += atomic_load_explicit(&ctl->shards[i].pol_revoked, memory_order_acquire);
    return n;
}

static uint64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * How many tunnels the reload to generation gen revoked: every running shard
 * adds what it closed to pol_revoked before it shows gen in pol_seen, so the
 * count is exact once every pol_seen shows it. Bounded by CTL_REVOKE_WAIT_MS
 * (a reload never hangs on a stuck shard; a late one's closes count at the
 * next reload).
 */
#define CTL_REVOKE_WAIT_MS 2000

static uint64_t
wait_revoked(const struct ctl *ctl, uint64_t gen, uint64_t before)
{
    const struct timespec tick = {.tv_nsec = 1000000};
    uint64_t start = mono_ms();
    while (mono_ms() - start < CTL_REVOKE_WAIT_MS) {
        bool seen = true;
        for (unsigned i = 0; i < ctl->n_shards && seen; i++)
            seen = atomic_load_explicit(&ctl->shards[i].exited, memory_order_acquire) ||
                   atomic_load_explicit(&ctl->shards[i].pol_seen, memory_order_acquire) >= gen;
        if (seen)
            break;
        nanosleep(&tick, NULL);
    }
    return revoked_total(ctl) - before;
}

int
ctl_reload(struct ctl *ctl, char *msg, size_t cap)
{
    struct opts o;
    struct policy *pol = NULL;
    char applied[2048], restart[2048];
    size_t used = 0;
    int ret = ctl->load(ctl->load_arg, &o, &pol, ctl->pol->gen + 1, msg, cap);
    /* The endpoint keeps its address until a restart: it is what must stay guarded. */
    if (ret == 0 && ctl->admin && admin_needs_token((const struct sockaddr *)&ctl->o->admin) &&
        !o.has_admin_token) {
        snprintf(msg, cap,
                 "admin_token_file: unset, but the admin endpoint listens beyond this host "
                 "until a restart: it keeps its token");
        policy_free(pol);
        ret = -1;
    }
    if (ret < 0) {
        ctl->st.reloads_failed++;
        ctl->st.last_reload_ok = 0;
        ctl->st.last_reload_time = wall_now();
        fprintf(stderr, "ringsocks: reload failed, keeping the running configuration:\n%s\n", msg);
        return -1;
    }
    /*
     * The report: settings compared row by row with those in force (the
     * ones a restart needs stay as started, and say so), users by name.
     */
    msg[0] = '\0';
    options_append(msg, cap, &used, "reloaded (policy %llu): ", (unsigned long long)pol->gen);
    options_diff(&ctl->loaded, &o, applied, sizeof(applied), restart, sizeof(restart));
    if (applied[0])
        options_append(msg, cap, &used, "applied: %s; ", applied);
    if (restart[0])
        options_append(msg, cap, &used, "needs a restart: %s; ", restart);
    if (!applied[0] && !restart[0])
        options_append(msg, cap, &used, "no setting changed; ");
    users_diff(ctl->pol->users, pol->users, msg, cap, &used);
    for (size_t i = 0; i < options_n_rows; i++)
        if (options_rows[i].flags & OPTIONS_F_RELOAD)
            options_copy(&options_rows[i], &ctl->loaded, &o);

    struct admin *admins[] = {ctl->admin, ctl->admin_unix};
    for (size_t i = 0; i < sizeof(admins) / sizeof(admins[0]); i++)
        if (admins[i])
            admin_set_token(admins[i], o.has_admin_token ? o.admin_token : NULL);

    uint64_t revoked = revoked_total(ctl);
    struct policy *old = ctl->pol;
    rcu_assign_pointer(ctl->pol, pol);
    for (unsigned i = 0; i < ctl->n_shards; i++)
        shard_wake(&ctl->shards[i]);
    synchronize_rcu();
    policy_free(old);
    revoked = wait_revoked(ctl, pol->gen, revoked);
    options_append(msg, cap, &used, "tunnels revoked: %llu", (unsigned long long)revoked);
    if (pol->rules_mark && !caps_can_mark())
        options_append(msg, cap, &used,
                       "; warning: rules set mark, but no capability for SO_MARK was kept at "
                       "start (caps.h): their tunnels fail (0x02) until a restart");
    ctl->st.reloads_ok++;
    ctl->st.last_reload_ok = 1;
    ctl->st.last_reload_ok_time = ctl->st.last_reload_time = wall_now();
    fprintf(stderr, "ringsocks: %s\n", msg);
    return 0;
}

void
ctl_drain(struct ctl *ctl)
{
    if (ctl->draining)
        return;
    ctl_upgrade_abort(ctl, "a drain began");
    ctl->draining = true;
    ctl->st.draining = 1;
    uint64_t deadline = watchdog_now_ms() + (uint64_t)ctl->o->drain_timeout_s * 1000;
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

/* A shard whose current work began over WATCHDOG_STALL_MS ago and has not ended (a
 * blocking call, an endless loop) is stalled: count it now, once, it may never end. */
static void
watch_shards(struct ctl *ctl)
{
    uint64_t now_ms = watchdog_now_ms();
    for (unsigned i = 0; i < ctl->n_shards; i++)
        if (watchdog_check(&ctl->shards[i].busy_since, now_ms))
            ctl->shards[i].watchdog_stalls++;
}

/* Seconds the thread tid waited runnable for a CPU (the second field of its schedstat),
 * or -1 when the kernel does not say (no CONFIG_SCHED_INFO, not started). */
static double
thread_cpu_wait(int tid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", tid);
    FILE *f = tid > 0 ? fopen(path, "re") : NULL;
    if (!f)
        return -1;
    unsigned long long run_ns, wait_ns;
    int n = fscanf(f, "%llu %llu", &run_ns, &wait_ns);
    fclose(f);
    return n == 2 ? (double)wait_ns / 1e9 : -1;
}

/* --- admin handlers ------------------------------------------------------ */

static size_t
h_metrics(void *arg, char **out)
{
    struct ctl *ctl = arg;
    size_t cap = 64 * 1024;
    /* What the metrics read of each shard: its counters, nothing else. */
    struct metrics_shard ms[ctl->n_shards];
    for (unsigned i = 0; i < ctl->n_shards; i++) {
        ms[i] = (struct metrics_shard){.id = ctl->shards[i].id,
                                       .st = &ctl->shards[i].st,
                                       .n_open = &ctl->shards[i].n_open,
                                       .watchdog_stalls = ctl->shards[i].watchdog_stalls,
                                       .cpu_wait_s = thread_cpu_wait(atomic_load_explicit(
                                           &ctl->shards[i].tid, memory_order_relaxed)),
                                       .bufs_resident = relay_bufs_resident(&ctl->shards[i])};
        gssw_stats_read(&ctl->shards[i], &ms[i].gss);
    }
    ctl->st.max_conns = ctl->o->max_conns;
    metrics_process_read(&ctl->st.proc);
    ctl->st.log_written = log_written(ctl->lg);
    ctl->st.log_dropped = log_dropped(ctl->lg);
    if (ctl->fleet) {
        struct fleet_stats fs;
        fleet_stats(ctl->fleet, &fs);
        ctl->st.has_redis = 1;
        ctl->st.redis_up = fs.up;
        ctl->st.redis_errors = fs.errors;
        ctl->st.redis_lease_rounds = fs.lease_rounds;
        ctl->st.redis_lease_fallbacks = fs.lease_fallbacks;
        ctl->st.redis_quota_syncs = fs.quota_syncs;
        ctl->st.redis_users_loads = fs.users_loads;
    }
    struct metrics_user *users = NULL;
    size_t n_users = acctctl_metrics(ctl->acct, ctl->pol, &users);
    for (;;) {
        char *buf = malloc(cap);
        if (!buf) {
            free(users);
            *out = NULL;
            return 0;
        }
        size_t n = metrics_render(buf, cap, ms, ctl->n_shards, &ctl->st);
        n += metrics_render_users(n < cap ? buf + n : NULL, n < cap ? cap - n : 0, users, n_users);
        if (n < cap) {
            free(users);
            *out = buf;
            return n;
        }
        free(buf);
        cap = n + n / 8 + 1; /* counters may grow between two renders */
    }
}

/* A reload, with systemd told (Type=notify): reloading, then ready again either way. */
static int
reload_notified(struct ctl *ctl, char *msg, size_t cap)
{
    notify_send("RELOADING=1");
    int rc = ctl_reload(ctl, msg, cap);
    notify_send("READY=1");
    return rc;
}

static int
h_reload(void *arg, char *msg, size_t cap)
{
    return reload_notified(arg, msg, cap);
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

/*
 * Every other admin path: each family of routes answers what it serves
 * (returns true) or leaves it to the next; none: 404.
 */
static void
h_other(void *arg, const struct admin_request *rq, struct admin_reply *out)
{
    struct ctl *ctl = arg;
    if (ctl_conns_route(ctl, rq, out))
        return;
    if (ctl_users_route(ctl, rq, out))
        return;
    if (ctl_upgrade_route(ctl, rq, out))
        return;
}

/* Client addresses' limit counters nobody needs any more are freed every few seconds. */
#define CTL_CLIMAP_SWEEP_MS 5000

static void
sweep_clients(struct ctl *ctl)
{
    uint64_t now = mono_ms();
    if (!ctl->climap || now - ctl->climap_swept_ms < CTL_CLIMAP_SWEEP_MS)
        return;
    ctl->climap_swept_ms = now;
    climap_sweep(ctl->climap, lim_now_ns());
}

/* acctctl_tick(): user a has just gone over its quota, with quota_close. */
static void
quota_over(void *arg, struct uacct *a)
{
    struct ctl *ctl = arg;
    struct acctctl_buf name = {0};
    unsigned closed = 0;
    int rc = ctl_disconnect_user(ctl, a, END_QUOTA, &closed);
    acctctl_json_str(&name, a->name);
    if (rc < 0)
        fprintf(stderr, "ringsocks: user %s is over its quota; closing its tunnels failed: %s\n",
                name.p ? name.p : "?", strerror(-rc));
    else
        fprintf(stderr, "ringsocks: user %s is over its quota: %u tunnels closed\n",
                name.p ? name.p : "?", closed);
    free(name.p);
}

int
ctl_state_save(struct ctl *ctl)
{
    return acctctl_save(ctl->acct);
}

void
ctl_finish(struct ctl *ctl)
{
    if (ctl->pol)
        acctctl_finish(ctl->acct, ctl->pol);
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
    sigaddset(&sigs, SIGUSR2);
    ctl->sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (ctl->sfd < 0) {
        perror("ringsocks: signalfd");
        return -1;
    }
    ctl->st.start_time = ctl->st.last_reload_ok_time = ctl->st.last_reload_time = wall_now();
    ctl->st.last_reload_ok = 1;
    /* A registered RCU reader, offline but for the client map's sweeps (climap.h). */
    rcu_register_thread();
    rcu_thread_offline();
    const struct admin_handlers handlers = {
        .arg = ctl,
        .metrics = h_metrics,
        .reload = h_reload,
        .drain = h_drain,
        .health = h_health,
        .other = h_other,
    };

    enum { N_ADMINS = 2 };
    while (!all_exited(ctl)) {
        /* Read each turn: an upgrade's hand-over closes them. */
        struct admin *admins[N_ADMINS] = {ctl->admin, ctl->admin_unix};
        struct pollfd pfd[1 + FLEET_POLL_MAX + CTL_UPGRADE_POLL_MAX + N_ADMINS * ADMIN_POLL_MAX] = {
            {.fd = ctl->sfd, .events = POLLIN}};
        unsigned n_admin[N_ADMINS] = {0}, n = 1, n_fleet = 0;
        /* Wake now and then to notice shards that finished draining. */
        int timeout_ms = 200;
        for (unsigned i = 0; i < N_ADMINS; i++) {
            if (admins[i])
                n_admin[i] = admin_poll_prepare(admins[i], pfd + n, &timeout_ms);
            n += n_admin[i];
        }
        if (ctl->fleet)
            n_fleet = fleet_poll_prepare(ctl->fleet, pfd + n, &timeout_ms);
        n += n_fleet;
        unsigned n_up = ctl_upgrade_poll_prepare(ctl, pfd + n, &timeout_ms);
        if (poll(pfd, n + n_up, timeout_ms) < 0 && errno != EINTR) {
            perror("ringsocks: poll");
            break;
        }
        struct pollfd *pfd_up = pfd + n;
        n = 1;
        for (unsigned i = 0; i < N_ADMINS; i++) {
            if (admins[i])
                admin_poll_done(admins[i], pfd + n, n_admin[i], &handlers);
            n += n_admin[i];
        }
        if (ctl->fleet) {
            fleet_poll_done(ctl->fleet, pfd + n, n_fleet, ctl->pol);
            /* The users table changed in Redis: every node reloads within an interval. */
            if (fleet_users_changed(ctl->fleet)) {
                char msg[4096];
                reload_notified(ctl, msg, sizeof(msg));
            }
        }
        /* After the admins: a hand-over closes them. */
        ctl_upgrade_poll_done(ctl, pfd_up, n_up);
        sweep_clients(ctl);
        watch_shards(ctl);
        acctctl_tick(ctl->acct, ctl->pol, quota_over, ctl);
        struct signalfd_siginfo si;
        while (read(ctl->sfd, &si, sizeof(si)) == sizeof(si)) {
            char msg[4096];
            switch (si.ssi_signo) {
            case SIGHUP:
                reload_notified(ctl, msg, sizeof(msg));
                break;
            case SIGUSR2:
                ctl_upgrade_start(ctl, msg, sizeof(msg));
                break;
            case SIGUSR1:
                /* The writer thread reopens and says so on stderr (log.c). */
                log_reopen(ctl->lg);
                acctctl_reopen(ctl->acct);
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
    rcu_thread_online();
    rcu_unregister_thread();
    return 0;
}
