/*
 * ctl_upgrade.c - the old process's half of a binary upgrade
 * (ctl.h): it starts the new binary with the sockets, waits for
 * "ready" inside the control loop's poll() (never blocking on it), then
 * hands over: MAINPID for systemd, its listeners closed without shutdown()
 * (the sockets are the new process's too), its admin endpoint closed
 * without removing the Unix socket's file, the state file left to the new
 * process, and a drain as on SIGTERM.
 */
#include "ctl.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "acct.h"
#include "acctctl.h"
#include "admin.h"
#include "fleet.h"
#include "json.h"
#include "notify.h"
#include "shard.h"
#include "upgrade.h"

/* After the new process closed its end: how long its exit status may take to show. */
#define CTL_UPGRADE_REAP_MS 1000
/* The hand-over fits in the socket buffer; a full one must not hang the control thread. */
#define CTL_UPGRADE_SEND_S  2

static uint64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
ctl_upgrade_init(struct ctl_upgrade *up, char **argv, const int *listen_fds, unsigned n_listen)
{
    memset(up, 0, sizeof(*up));
    up->argv = argv;
    up->listen_fds = listen_fds;
    up->n_listen = n_listen;
    up->sock = -1;
    up->pid = -1;
    up->to_new = -1;
    up->from_old = -1;
    int rc = upgrade_self_exe(up->exe, sizeof(up->exe));
    if (rc < 0) {
        up->exe[0] = '\0';
        fprintf(stderr, "ringsocks: warning: /proc/self/exe: %s: SIGUSR2 cannot upgrade\n",
                strerror(-rc));
    }
}

/* "exited with status 2", "was killed by SIGSEGV". */
static void
status_text(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, cap, "ended with wait status %#x", (unsigned)status);
}

static void
forget_used(struct ctl_upgrade *up)
{
    free(up->used_base);
    up->used_base = NULL;
    up->used_n = 0;
}

/* The upgrade failed: the new process (if it still runs) is killed by PID and reaped. */
static void
fail(struct ctl *ctl, const char *why)
{
    struct ctl_upgrade *up = ctl->up;
    if (up->pid > 0) {
        kill(up->pid, SIGKILL);
        while (waitpid(up->pid, NULL, 0) == -1 && errno == EINTR)
            ;
    }
    if (up->sock >= 0)
        close(up->sock);
    up->sock = -1;
    up->pid = -1;
    forget_used(up);
    ctl->st.upgrades_failed++;
    fprintf(stderr, "ringsocks: upgrade failed: %s; this process (%d) keeps serving\n", why,
            (int)getpid());
}

/* The new process closed its end without "ready": say how it ended. */
static void
closed_early(struct ctl *ctl, int rc)
{
    struct ctl_upgrade *up = ctl->up;
    char why[256], how[128];
    const struct timespec tick = {.tv_nsec = 10 * 1000000};
    uint64_t until = now_ms() + CTL_UPGRADE_REAP_MS;
    int status;
    pid_t got;
    do {
        got = waitpid(up->pid, &status, WNOHANG);
        if (got == 0)
            nanosleep(&tick, NULL);
    } while ((got == 0 || (got == -1 && errno == EINTR)) && now_ms() < until);
    if (got == up->pid) {
        status_text(status, how, sizeof(how));
        snprintf(why, sizeof(why), "new process %d %s before it was ready", (int)up->pid, how);
        up->pid = -1;
    } else if (rc == -EPROTO) {
        snprintf(why, sizeof(why), "new process %d sent something other than \"ready\"",
                 (int)up->pid);
    } else {
        snprintf(why, sizeof(why),
                 "new process %d closed the upgrade socket without being ready%s%s", (int)up->pid,
                 rc < 0 ? ": " : "", rc < 0 ? strerror(-rc) : "");
    }
    fail(ctl, why);
}

static int send_used(struct ctl *ctl, const char *when);

/* The new process serves: leave it the sockets and the files, and drain. */
static void
hand_over(struct ctl *ctl, pid_t ready_pid, unsigned flags)
{
    struct ctl_upgrade *up = ctl->up;
    fprintf(stderr,
            "ringsocks: upgrade: new process %d is ready; this process (%d) stops accepting "
            "and drains\n",
            (int)ready_pid, (int)getpid());
    /* Before anything of ours stops: systemd follows the new process from here on. */
    notify_send("MAINPID=%d", (int)ready_pid);
    up->to_new = up->sock; /* for the quota bytes */
    up->sock = -1;
    /* What it does not know yet: counted since the state file was saved for it (or, with
     * none, everything); the rest at our exit. */
    send_used(ctl, "before the hand-over");
    up->pid = -1;
    up->handed_over = true;
    ctl->st.upgrades_ok++;
    acctctl_state_release(ctl->acct);
    fleet_hand_over(ctl->fleet);
    for (unsigned i = 0; i < ctl->n_shards; i++)
        shard_keep_listeners(&ctl->shards[i]);
    /* Its file is the new process's when it serves on it; else (another admin_socket, or
     * none) ours to remove. */
    if (flags & UPGRADE_READY_ADMIN_UNIX)
        admin_keep_path(ctl->admin_unix);
    admin_close(ctl->admin);
    admin_close(ctl->admin_unix);
    ctl->admin = ctl->admin_unix = NULL;
    ctl_drain(ctl);
}

/* Every socket the new process gets: *out malloc'ed. The count, or -ENOMEM. */
static int
collect(struct ctl *ctl, struct upgrade_fd **out)
{
    const struct ctl_upgrade *up = ctl->up;
    size_t n = (size_t)ctl->n_shards * up->n_listen + 2, k = 0;
    struct upgrade_fd *fds = calloc(n, sizeof(*fds));
    if (!fds)
        return -ENOMEM;
    for (unsigned s = 0; s < ctl->n_shards; s++) {
        for (unsigned i = 0; i < up->n_listen; i++) {
            struct upgrade_fd *f = &fds[k++];
            f->fd = up->listen_fds[s * up->n_listen + i];
            f->rec.kind = UPGRADE_FD_LISTEN;
            f->rec.shard = s;
            f->rec.addr = ctl->o->listen[i];
        }
    }
    if (ctl->admin) {
        struct upgrade_fd *f = &fds[k++];
        socklen_t len = sizeof(f->rec.addr);
        f->fd = admin_fd(ctl->admin);
        f->rec.kind = UPGRADE_FD_ADMIN;
        getsockname(f->fd, (struct sockaddr *)&f->rec.addr, &len);
    }
    if (ctl->admin_unix) {
        struct upgrade_fd *f = &fds[k++];
        f->fd = admin_fd(ctl->admin_unix);
        f->rec.kind = UPGRADE_FD_ADMIN_UNIX;
        snprintf(f->rec.path, sizeof(f->rec.path), "%s", ctl->o->admin_socket);
    }
    *out = fds;
    return (int)k;
}

int
ctl_upgrade_start(struct ctl *ctl, char *msg, size_t cap)
{
    struct ctl_upgrade *up = ctl->up;
    struct upgrade_fd *fds = NULL;
    int sv[2] = {-1, -1}, rc;
    if (!up || (!up->exe[0] && !ctl->loaded.upgrade_binary[0])) {
        snprintf(msg, cap, "upgrade impossible: the path of this binary is not known");
        rc = -ENOENT;
        goto out;
    }
    if (up->sock >= 0) {
        snprintf(msg, cap, "an upgrade is in progress (new process %d)", (int)up->pid);
        rc = -EBUSY;
        goto out;
    }
    if (ctl->draining) {
        snprintf(msg, cap, "draining%s: no upgrade", up->handed_over ? " after an upgrade" : "");
        rc = -EBUSY;
        goto out;
    }
    int n = collect(ctl, &fds);
    if (n < 0) {
        rc = n;
        snprintf(msg, cap, "upgrade failed: %s", strerror(-rc));
        goto out;
    }
    /* The quota counts up to now, for the new process to start from; what is counted from
     * here on goes to it at the hand-over and at our exit (send_used()). Without a state
     * file it starts from nothing: everything goes. */
    acctctl_save(ctl->acct);
    up->used_n = ctl->reg && ctl->o->state_file[0] ? acct_count(ctl->reg) : 0;
    up->used_base = calloc(up->used_n ? up->used_n : 1, sizeof(uint64_t));
    if (!up->used_base) {
        rc = -ENOMEM;
        snprintf(msg, cap, "upgrade failed: %s", strerror(-rc));
        goto out;
    }
    for (size_t i = 0; i < up->used_n; i++)
        up->used_base[i] = acctctl_used(acct_at(ctl->reg, i));
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
        rc = -errno;
        snprintf(msg, cap, "upgrade failed: socketpair: %s", strerror(-rc));
        goto out;
    }
    struct timeval tv = {.tv_sec = CTL_UPGRADE_SEND_S};
    setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    const char *exe = ctl->loaded.upgrade_binary[0] ? ctl->loaded.upgrade_binary : up->exe;
    rc = upgrade_spawn(exe, up->argv, sv[1], &up->pid);
    close(sv[1]);
    sv[1] = -1;
    if (rc < 0) {
        up->pid = -1;
        snprintf(msg, cap, "upgrade failed: cannot start %s: %s", exe, strerror(-rc));
        goto out;
    }
    up->sock = sv[0];
    sv[0] = -1;
    up->deadline_ms = now_ms() + (uint64_t)ctl->loaded.upgrade_timeout_s * 1000;
    fprintf(stderr, "ringsocks: upgrade started: new process %d (%s), %d sockets handed over\n",
            (int)up->pid, exe, n);
    rc = upgrade_send_fds(up->sock, fds, (size_t)n, ctl->n_shards);
    if (rc < 0) {
        /* Most often it has exited already (a configuration that does not load). */
        pid_t pid = up->pid;
        closed_early(ctl, rc);
        snprintf(msg, cap, "upgrade failed: new process %d: %s", (int)pid, strerror(-rc));
        goto out_quiet;
    }
    snprintf(msg, cap, "upgrade started: new process %d", (int)up->pid);
    rc = 0;
    goto out_quiet;
out:
    if (rc == -EBUSY) {
        fprintf(stderr, "ringsocks: upgrade refused: %s\n", msg);
    } else {
        fprintf(stderr, "ringsocks: %s\n", msg);
        ctl->st.upgrades_failed++;
        if (up)
            forget_used(up);
    }
out_quiet:
    if (sv[0] >= 0)
        close(sv[0]);
    free(fds);
    return rc;
}

unsigned
ctl_upgrade_poll_prepare(struct ctl *ctl, struct pollfd *pfd, int *timeout_ms)
{
    const struct ctl_upgrade *up = ctl->up;
    unsigned n = 0;
    if (!up)
        return 0;
    if (up->from_old >= 0)
        pfd[n++] = (struct pollfd){.fd = up->from_old, .events = POLLIN};
    if (up->sock >= 0) {
        pfd[n++] = (struct pollfd){.fd = up->sock, .events = POLLIN};
        uint64_t now = now_ms();
        int left = up->deadline_ms > now ? (int)(up->deadline_ms - now) : 0;
        if (left < *timeout_ms)
            *timeout_ms = left;
    }
    return n;
}

struct used_sum {
    struct ctl *ctl;
    size_t users;
    uint64_t bytes;
};

static void
add_used(void *arg, const char *name, uint64_t bytes)
{
    struct used_sum *s = arg;
    struct uacct *a = s->ctl->reg ? acct_get(s->ctl->reg, name) : NULL;
    if (!a)
        return;
    acctctl_add_used(s->ctl->pol, a, bytes);
    s->users++;
    s->bytes += bytes;
}

/* In the new process: the old one's quota bytes, until it closes its end. */
static void
from_old_ready(struct ctl *ctl)
{
    struct ctl_upgrade *up = ctl->up;
    static uint8_t buf[UPGRADE_USED_MAX];
    struct used_sum sum = {.ctl = ctl};
    size_t len;
    int rc;
    while ((rc = upgrade_recv_used(up->from_old, buf, sizeof(buf), &len)) == 1)
        if (upgrade_used_parse(buf, len, add_used, &sum) < 0)
            break;
    if (sum.users)
        fprintf(stderr,
                "ringsocks: upgrade: the old process's quota bytes since the upgrade began: "
                "%zu users, %llu bytes added\n",
                sum.users, (unsigned long long)sum.bytes);
    if (rc == -EAGAIN)
        return;
    if (rc < 0)
        fprintf(stderr, "ringsocks: upgrade: the old process's quota bytes: %s\n", strerror(-rc));
    close(up->from_old);
    up->from_old = -1;
    acctctl_save(ctl->acct);
}

void
ctl_upgrade_poll_done(struct ctl *ctl, const struct pollfd *pfd, unsigned n)
{
    struct ctl_upgrade *up = ctl->up;
    if (!up)
        return;
    if (n && up->from_old >= 0 && pfd[0].fd == up->from_old) {
        if (pfd[0].revents)
            from_old_ready(ctl);
        pfd++;
        n--;
    }
    if (up->sock < 0)
        return;
    if (n && pfd[0].revents) {
        pid_t pid = -1;
        unsigned flags = 0;
        int rc = upgrade_recv_ready(up->sock, &pid, &flags);
        if (rc == 1) {
            hand_over(ctl, pid, flags);
            return;
        }
        if (rc != -EAGAIN) {
            closed_early(ctl, rc);
            return;
        }
    }
    if (now_ms() >= up->deadline_ms) {
        char why[128];
        snprintf(why, sizeof(why), "new process %d did not confirm within %u s", (int)up->pid,
                 ctl->loaded.upgrade_timeout_s);
        fail(ctl, why);
    }
}

/*
 * Send the new process each user's quota bytes counted here beyond the base,
 * then make the counts now the base. when: for the log. 0 or -errno (said
 * on stderr; the new process's quotas then miss them).
 */
static int
send_used(struct ctl *ctl, const char *when)
{
    struct ctl_upgrade *up = ctl->up;
    static uint8_t buf[UPGRADE_USED_MAX];
    size_t len = 0, users = 0, n = ctl->reg ? acct_count(ctl->reg) : 0;
    uint64_t bytes = 0;
    int rc = 0;
    /* Users made since the base was taken: their base is 0. */
    if (n > up->used_n) {
        uint64_t *grown = realloc(up->used_base, n * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        memset(grown + up->used_n, 0, (n - up->used_n) * sizeof(*grown));
        up->used_base = grown;
        up->used_n = n;
    }
    uint64_t *base = up->used_base;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct uacct *a = acct_at(ctl->reg, i);
        uint64_t now = acctctl_used(a);
        /* Below the base: a new quota period began, and all of now is in it. */
        uint64_t d = now >= base[i] ? now - base[i] : now;
        base[i] = now;
        if (!d)
            continue;
        if (!upgrade_used_add(buf, &len, sizeof(buf), a->name, d)) {
            rc = upgrade_send_used(up->to_new, buf, len);
            len = 0;
            if (rc < 0 || !upgrade_used_add(buf, &len, sizeof(buf), a->name, d))
                continue;
        }
        users++;
        bytes += d;
    }
    if (rc == 0 && len)
        rc = upgrade_send_used(up->to_new, buf, len);
    if (rc < 0)
        fprintf(stderr,
                "ringsocks: upgrade: the quota bytes counted here %s did not reach the new "
                "process (its quotas miss them): %s\n",
                when, strerror(-rc));
    else if (users)
        fprintf(stderr,
                "ringsocks: upgrade: quota bytes counted here %s handed to the new process: "
                "%zu users, %llu bytes\n",
                when, users, (unsigned long long)bytes);
    return rc;
}

void
ctl_upgrade_finish(struct ctl *ctl)
{
    struct ctl_upgrade *up = ctl->up;
    if (!up)
        return;
    if (up->to_new >= 0) {
        send_used(ctl, "during the drain");
        close(up->to_new);
        up->to_new = -1;
    }
    forget_used(up);
}

void
ctl_upgrade_abort(struct ctl *ctl, const char *why)
{
    if (ctl->up && ctl->up->sock >= 0)
        fail(ctl, why);
}

bool
ctl_upgrade_route(struct ctl *ctl, const struct admin_request *rq, struct admin_reply *out)
{
    if (strcmp(rq->path, "/upgrade") != 0)
        return false;
    if (strcmp(rq->method, "POST") != 0) {
        out->status = 405;
        out->allow = "POST";
        return true;
    }
    char msg[512], text[6 * sizeof(msg) + 2];
    int rc = ctl_upgrade_start(ctl, msg, sizeof(msg));
    json_escape(msg, strlen(msg), text, sizeof(text));
    out->status = rc == 0 ? 202 : rc == -EBUSY ? 409 : 500;
    int len = rc == 0
                  ? asprintf(&out->body, "{\"pid\":%d,\"message\":%s}\n", (int)ctl->up->pid, text)
                  : asprintf(&out->body, "{\"error\":%s}\n", text);
    if (len < 0) {
        out->body = NULL;
        out->status = 500;
        len = 0;
    }
    out->len = (size_t)len;
    return true;
}
