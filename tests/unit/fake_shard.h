/*
 * fake_shard.h - a shard around the real slot layer (conn.o) for the unit
 * tests of the shard core (test_conn.c, test_relay.c, test_request.c), on
 * the fake ring of fake_ring.h, which it includes. Include after cmocka.h, in
 * one test file per binary.
 *
 * Defines the neighbours of conn.o that these tests do not exercise:
 * log_push() (log.h: counts the access-log lines and keeps the last; unless
 * FAKE_SHARD_REAL_LOG is defined before the include: the test links log.o) and,
 * unless FAKE_SHARD_REAL_POLICY is defined before the include (the test links
 * the real rules), policy_decide() (everything allowed, no rule deciding),
 * acl_rule_name() (no names) and users_hash() (no user known).
 */
#ifndef RINGSOCKS_TEST_FAKE_SHARD_H
#define RINGSOCKS_TEST_FAKE_SHARD_H

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acl.h"
#include "conn.h"
#include "hosts.h"
#include "log.h"
#include "policy.h"
#include "shard_types.h"
#include "users.h"

#include "fake_ring.h"

static unsigned fs_log_n; /* access-log lines pushed */

#ifndef FAKE_SHARD_REAL_LOG
static struct log_rec fs_log_last; /* the last of them */

bool
log_push(struct logger *lg, unsigned shard, const struct log_rec *rec)
{
    (void)lg;
    (void)shard;
    fs_log_n++;
    fs_log_last = *rec;
    return true;
}
#endif

#ifndef FAKE_SHARD_REAL_POLICY
bool
policy_decide(const struct policy *p, const struct opts *o, const struct policy_req *r, int *rule,
              int *decided)
{
    (void)p;
    (void)o;
    (void)r;
    *rule = -1;
    *decided = POLICY_DECIDED_NONE;
    return true;
}

const char *
acl_rule_name(const struct acl *acl, int rule)
{
    (void)acl;
    (void)rule;
    return NULL;
}

const char *
users_hash(const struct users *u, const char *user)
{
    (void)u;
    (void)user;
    return NULL;
}
#endif

/* The phase a connection is in before the one under test: nothing may reach it. */
static inline void
fs_before_on_cqe(struct shard *sh, struct conn *c, const struct io_uring_cqe *cqe)
{
    (void)sh;
    (void)c;
    fail_msg("a CQE (op %u) reached the phase before the one under test", ud_op(cqe->user_data));
}

static const struct conn_phase fs_before_phase = {.name = "before", .on_cqe = fs_before_on_cqe};

/* The programs' ends of the socket pairs fs_pair() made, closed by fs_fini(). */
#define FS_MAX_PEERS 64
static int fs_peers[FS_MAX_PEERS];
static unsigned fs_n_peers;

/* A connected non-blocking AF_UNIX stream pair: the shard's end; the other is fs_peers[]'s. */
static inline int
fs_pair(void)
{
    int sp[2];
    assert_true(fs_n_peers < FS_MAX_PEERS);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp), 0);
    fs_peers[fs_n_peers++] = sp[1];
    return sp[0];
}

/* A fresh shard of slots connections with options o and rules pol, its clock far from 0. */
static inline void
fs_start(struct shard *sh, const struct opts *o, const struct policy *pol, uint32_t slots)
{
    memset(sh, 0, sizeof(*sh));
    fr_reset();
    fs_log_n = 0;
    fs_n_peers = 0;
    sh->o = o;
    sh->pol = pol;
    sh->now_s = 100000;
    sh->now_ds = 1000000;
    clients_init(&sh->clients, 60);
    assert_int_equal(conn_table_init(sh, slots), 0);
}

/*
 * Close every connection and let what is in flight complete: as the kernel
 * would (kernel: shutdown() woke it) or by hand with -ECANCELED. Then every
 * slot must be free and every per-client count given back.
 */
static inline void
fs_close_all(struct shard *sh, bool kernel)
{
    conn_close_all(sh, END_SHUTDOWN);
    fr_hold = NULL;
    if (kernel)
        fr_run(sh, 100);
    else
        while (fr_n)
            fr_complete(sh, 0, -ECANCELED, 0);
    assert_int_equal(fr_n, 0);
    for (uint32_t i = 0; i < sh->high; i++)
        assert_int_equal(sh->conns[i].state, CONN_FREE);
    assert_int_equal(sh->n_open, 0);
    assert_int_equal(clients_count(&sh->clients), 0);
}

/* A hosts table (hosts(5) text) read from a temporary file, path[64] (the caller unlinks). */
static inline struct hosts *
fs_hosts(char path[64], const char *text)
{
    snprintf(path, 64, "/tmp/test_hosts.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct hosts *h = hosts_load(path);
    assert_non_null(h);
    return h;
}

/* fds this process has open now (its own ends of the pairs included). */
static inline unsigned
fs_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    unsigned n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/*
 * An fd storm, for real: the soft RLIMIT_NOFILE lowered to FS_FILL_MAX (when above it) and
 * every free fd number below the limit taken by a copy of /dev/null, so that socket(),
 * pipe2() and accept() fail with EMFILE as they do in a server at its limit. Nothing that
 * needs an fd (fs_open_fds() included) works until fs_fd_unfill(), which closes them and
 * puts the limit back.
 */
#define FS_FILL_MAX 1024
static int fs_fill[FS_FILL_MAX];
static unsigned fs_n_fill;
static struct rlimit fs_fill_rl;

static inline void
fs_fd_fill(void)
{
    assert_int_equal(fs_n_fill, 0);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &fs_fill_rl), 0);
    struct rlimit rl = fs_fill_rl;
    if (rl.rlim_cur > FS_FILL_MAX)
        rl.rlim_cur = FS_FILL_MAX;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    fs_fill[fs_n_fill++] = fd;
    for (;;) {
        int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (d == -1) {
            assert_int_equal(errno, EMFILE);
            break;
        }
        assert_true(fs_n_fill < FS_FILL_MAX);
        fs_fill[fs_n_fill++] = d;
    }
}

static inline void
fs_fd_unfill(void)
{
    for (unsigned i = 0; i < fs_n_fill; i++)
        close(fs_fill[i]);
    fs_n_fill = 0;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &fs_fill_rl), 0);
}

static inline void
fs_fini(struct shard *sh)
{
    if (fs_n_fill) /* a test failed in a storm */
        fs_fd_unfill();
    conn_table_fini(sh);
    clients_fini(&sh->clients);
    for (unsigned i = 0; i < fs_n_peers; i++)
        close(fs_peers[i]);
    fs_n_peers = 0;
}

#endif
