/*
 * upgrade.c - the binary upgrade's mechanism (upgrade.h): spawn, the fd
 * hand-over over SCM_RIGHTS, the ready message. The control thread of the
 * old process and main() of the new one call it; no shard ever does.
 */
#include "upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"

extern char **environ;

/* ---- pure parts */

static bool
rec_matches(const struct upgrade_rec *r, enum upgrade_kind kind, const struct sockaddr *want,
            const char *path, unsigned shard)
{
    if (r->kind != (uint32_t)kind)
        return false;
    if (kind == UPGRADE_FD_ADMIN_UNIX)
        return path && strncmp(r->path, path, sizeof(r->path)) == 0;
    if (kind == UPGRADE_FD_LISTEN && r->shard != shard)
        return false;
    const union sockaddr_inx *a = (const union sockaddr_inx *)&r->addr;
    const union sockaddr_inx *b = (const union sockaddr_inx *)want;
    if (!want || !addr_same_ip(a, b))
        return false;
    return addr_port(b) == 0 || addr_port(a) == addr_port(b);
}

int
upgrade_take(struct upgrade_fd *fds, size_t n, enum upgrade_kind kind, const struct sockaddr *want,
             const char *path, unsigned shard)
{
    for (size_t i = 0; i < n; i++) {
        if (fds[i].fd < 0 || !rec_matches(&fds[i].rec, kind, want, path, shard))
            continue;
        int fd = fds[i].fd;
        fds[i].fd = -1;
        return fd;
    }
    return -1;
}

size_t
upgrade_close_rest(struct upgrade_fd *fds, size_t n)
{
    size_t closed = 0;
    for (size_t i = 0; i < n; i++) {
        if (fds[i].fd >= 0) {
            close(fds[i].fd);
            fds[i].fd = -1;
            closed++;
        }
    }
    return closed;
}

bool
upgrade_used_add(uint8_t *p, size_t *len, size_t cap, const char *name, uint64_t bytes)
{
    size_t nl = strlen(name);
    if (nl > UPGRADE_NAME_MAX || *len + 10 + nl > cap)
        return false;
    uint16_t n16 = (uint16_t)nl;
    memcpy(p + *len, &bytes, 8);
    memcpy(p + *len + 8, &n16, 2);
    memcpy(p + *len + 10, name, nl);
    *len += 10 + nl;
    return true;
}

int
upgrade_used_parse(const uint8_t *p, size_t len,
                   void (*fn)(void *arg, const char *name, uint64_t bytes), void *arg)
{
    char name[UPGRADE_NAME_MAX + 1];
    size_t off = 0;
    while (off < len) {
        uint64_t bytes;
        uint16_t nl;
        if (len - off < 10)
            return -EPROTO;
        memcpy(&bytes, p + off, 8);
        memcpy(&nl, p + off + 8, 2);
        if (nl > UPGRADE_NAME_MAX || len - off - 10 < nl)
            return -EPROTO;
        memcpy(name, p + off + 10, nl);
        name[nl] = '\0';
        fn(arg, name, bytes);
        off += 10 + (size_t)nl;
    }
    return 0;
}

/* ---- old process */

int
upgrade_self_exe(char *buf, size_t cap)
{
    static const char deleted[] = " (deleted)";
    ssize_t len = readlink("/proc/self/exe", buf, cap - 1);
    if (len == -1)
        return -errno;
    if ((size_t)len >= cap - 1)
        return -ENAMETOOLONG;
    buf[len] = '\0';
    size_t dl = sizeof(deleted) - 1;
    if ((size_t)len > dl && strcmp(buf + len - dl, deleted) == 0)
        buf[len - dl] = '\0';
    return 0;
}

int
upgrade_spawn(const char *exe, char *const argv[], int child_fd, pid_t *pid)
{
    size_t n_env = 0;
    while (environ[n_env])
        n_env++;
    char **env = calloc(n_env + 2, sizeof(char *));
    if (!env)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], UPGRADE_ENV "=", sizeof(UPGRADE_ENV)) != 0)
            env[k++] = environ[i];
    char var[sizeof(UPGRADE_ENV) + 16];
    snprintf(var, sizeof(var), "%s=%d", UPGRADE_ENV, UPGRADE_CHILD_FD);
    env[k] = var;

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    /* dup2 clears FD_CLOEXEC on the copy (glibc does so even when the numbers are equal). */
    posix_spawn_file_actions_adddup2(&fa, child_fd, UPGRADE_CHILD_FD);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawn(pid, exe, &fa, &attr, argv, env);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    return -rc;
}

/* hdr then body[0..len) as one message. 0 or -errno. */
static int
send_body(int sock, const struct upgrade_hdr *hdr, const void *body, size_t len)
{
    struct iovec iov[2] = {{(void *)hdr, sizeof(*hdr)}, {(void *)body, len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t sent;
    do
        sent = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (sent == -1 && errno == EINTR);
    if (sent == -1)
        return -errno;
    return sent == (ssize_t)(sizeof(*hdr) + len) ? 0 : -EMSGSIZE;
}

int
upgrade_send_used(int sock, const uint8_t *p, size_t len)
{
    struct upgrade_hdr hdr = {.magic = UPGRADE_MAGIC, .type = UPGRADE_MSG_USED, .n = (uint32_t)len};
    return send_body(sock, &hdr, p, len);
}

/* One message: hdr, then n records, with the n fds (n may be 0). 0 or -errno. */
static int
send_msg(int sock, uint32_t type, uint32_t n, uint32_t arg, const struct upgrade_fd *fds)
{
    struct upgrade_hdr hdr = {.magic = UPGRADE_MAGIC, .type = type, .n = n, .arg = arg};
    struct upgrade_rec recs[UPGRADE_FDS_PER_MSG];
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * UPGRADE_FDS_PER_MSG)];
    } cm;
    struct iovec iov[2] = {{&hdr, sizeof(hdr)}, {recs, 0}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    if (type == UPGRADE_MSG_FDS && n) {
        memset(&cm, 0, sizeof(cm));
        int *out = (int *)CMSG_DATA(&cm.h);
        for (uint32_t i = 0; i < n; i++) {
            recs[i] = fds[i].rec;
            memcpy(out + i, &fds[i].fd, sizeof(int));
        }
        iov[1].iov_len = n * sizeof(recs[0]);
        mh.msg_control = cm.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        cm.h.cmsg_level = SOL_SOCKET;
        cm.h.cmsg_type = SCM_RIGHTS;
        cm.h.cmsg_len = CMSG_LEN(sizeof(int) * n);
    }
    ssize_t len;
    do
        len = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (len == -1 && errno == EINTR);
    if (len == -1)
        return -errno;
    return len == (ssize_t)(sizeof(hdr) + iov[1].iov_len) ? 0 : -EMSGSIZE;
}

int
upgrade_send_fds(int sock, const struct upgrade_fd *fds, size_t n, unsigned n_shards)
{
    for (size_t i = 0; i < n; i += UPGRADE_FDS_PER_MSG) {
        size_t chunk = n - i < UPGRADE_FDS_PER_MSG ? n - i : UPGRADE_FDS_PER_MSG;
        int rc = send_msg(sock, UPGRADE_MSG_FDS, (uint32_t)chunk, 0, fds + i);
        if (rc < 0)
            return rc;
    }
    return send_msg(sock, UPGRADE_MSG_END, (uint32_t)n, n_shards, NULL);
}

int
upgrade_recv_ready(int sock, pid_t *pid, unsigned *flags)
{
    struct upgrade_hdr hdr;
    ssize_t len;
    do
        len = recv(sock, &hdr, sizeof(hdr), MSG_DONTWAIT);
    while (len == -1 && errno == EINTR);
    if (len == -1)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (len == 0)
        return 0;
    if (len != sizeof(hdr) || hdr.magic != UPGRADE_MAGIC || hdr.type != UPGRADE_MSG_READY)
        return -EPROTO;
    *pid = (pid_t)hdr.arg;
    *flags = hdr.n;
    return 1;
}

/* ---- new process */

int
upgrade_child_fd(void)
{
    const char *v = getenv(UPGRADE_ENV);
    if (!v)
        return -1;
    char *end;
    long fd = strtol(v, &end, 10);
    unsetenv(UPGRADE_ENV);
    if (*end || fd < 0 || fd > 65535)
        return -1;
    /* dup2() in the spawn cleared it: nothing this process starts may inherit it. */
    if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) == -1)
        return -1;
    return (int)fd;
}

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Close the fds of a message that is not taken. */
static void
close_cmsg_fds(struct msghdr *mh)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            close(fd);
        }
    }
}

int
upgrade_recv_fds(int sock, int timeout_ms, struct upgrade_fd **out, size_t *n, unsigned *old_shards)
{
    struct upgrade_fd *fds = NULL;
    size_t have = 0;
    int64_t deadline = mono_ms() + timeout_ms;
    int rc;
    struct upgrade_hdr hdr;
    struct upgrade_rec recs[UPGRADE_FDS_PER_MSG];
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * UPGRADE_FDS_PER_MSG)];
    } cm;

    for (;;) {
        int64_t left = deadline - mono_ms();
        struct pollfd pfd = {.fd = sock, .events = POLLIN};
        if (left <= 0) {
            rc = -ETIMEDOUT;
            goto fail;
        }
        rc = poll(&pfd, 1, (int)left);
        if (rc == -1 && errno == EINTR)
            continue;
        if (rc == -1) {
            rc = -errno;
            goto fail;
        }
        if (rc == 0)
            continue;
        struct iovec iov[2] = {{&hdr, sizeof(hdr)}, {recs, sizeof(recs)}};
        struct msghdr mh = {
            .msg_iov = iov, .msg_iovlen = 2, .msg_control = cm.buf, .msg_controllen = sizeof(cm)};
        ssize_t len = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (len == -1 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (len == -1) {
            rc = -errno;
            goto fail;
        }
        rc = -EPROTO;
        if (len == 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || len < (ssize_t)sizeof(hdr) ||
            hdr.magic != UPGRADE_MAGIC) {
            close_cmsg_fds(&mh);
            goto fail;
        }
        if (hdr.type == UPGRADE_MSG_END) {
            close_cmsg_fds(&mh);
            if (hdr.n != have)
                goto fail;
            *out = fds;
            *n = have;
            *old_shards = hdr.arg;
            return 0;
        }
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        size_t k = c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS
                       ? (c->cmsg_len - CMSG_LEN(0)) / sizeof(int)
                       : 0;
        if (hdr.type != UPGRADE_MSG_FDS || hdr.n == 0 || hdr.n > UPGRADE_FDS_PER_MSG ||
            k != hdr.n || (size_t)len != sizeof(hdr) + hdr.n * sizeof(recs[0])) {
            close_cmsg_fds(&mh);
            goto fail;
        }
        struct upgrade_fd *grown = realloc(fds, (have + k) * sizeof(*fds));
        if (!grown) {
            close_cmsg_fds(&mh);
            rc = -ENOMEM;
            goto fail;
        }
        fds = grown;
        for (size_t i = 0; i < k; i++) {
            memcpy(&fds[have].fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            fds[have].rec = recs[i];
            fds[have].rec.path[sizeof(fds[have].rec.path) - 1] = '\0';
            have++;
        }
    }
fail:
    upgrade_close_rest(fds, have);
    free(fds);
    return rc;
}

int
upgrade_send_ready(int sock, unsigned flags)
{
    return send_msg(sock, UPGRADE_MSG_READY, flags, (uint32_t)getpid(), NULL);
}

int
upgrade_recv_used(int sock, uint8_t *buf, size_t cap, size_t *len)
{
    struct upgrade_hdr hdr;
    struct iovec iov[2] = {{&hdr, sizeof(hdr)}, {buf, cap}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t got;
    do
        got = recvmsg(sock, &mh, MSG_DONTWAIT);
    while (got == -1 && errno == EINTR);
    if (got == -1)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (got == 0)
        return 0;
    if ((mh.msg_flags & MSG_TRUNC) || got < (ssize_t)sizeof(hdr) || hdr.magic != UPGRADE_MAGIC ||
        hdr.type != UPGRADE_MSG_USED || hdr.n != (size_t)got - sizeof(hdr))
        return -EPROTO;
    *len = hdr.n;
    return 1;
}
