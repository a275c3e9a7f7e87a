/*
 * test_upgrade.c - the binary upgrade's hand-over (upgrade.h): matching the
 * new configuration's listen addresses to the sockets received (port 0, the
 * shard, the admin sockets), the messages over a real socket pair with the
 * fds in SCM_RIGHTS across several chunks, "ready", and what a bad peer gets.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "upgrade.h"

static struct sockaddr_storage
v4(const char *ip, unsigned port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &in->sin_addr);
    return ss;
}

static struct upgrade_fd
listener(int fd, const char *ip, unsigned port, unsigned shard)
{
    struct upgrade_fd f;
    memset(&f, 0, sizeof(f));
    f.fd = fd;
    f.rec.kind = UPGRADE_FD_LISTEN;
    f.rec.shard = shard;
    f.rec.addr = v4(ip, port);
    return f;
}

static void
test_take(void **state)
{
    (void)state;
    struct upgrade_fd fds[6] = {
        listener(10, "127.0.0.1", 1080, 0),
        listener(11, "127.0.0.1", 1080, 1),
        listener(12, "127.0.0.1", 2000, 0),
        listener(13, "127.0.0.1", 2000, 1),
    };
    memset(&fds[4], 0, sizeof(fds[4]));
    fds[4].fd = 14;
    fds[4].rec.kind = UPGRADE_FD_ADMIN;
    fds[4].rec.addr = v4("127.0.0.1", 9180);
    memset(&fds[5], 0, sizeof(fds[5]));
    fds[5].fd = 15;
    fds[5].rec.kind = UPGRADE_FD_ADMIN_UNIX;
    snprintf(fds[5].rec.path, sizeof(fds[5].rec.path), "/run/ringsocks/admin.sock");

    struct sockaddr_storage want = v4("127.0.0.1", 2000), any = v4("127.0.0.1", 0),
                            other = v4("127.0.0.2", 1080);
    /* Exact address, by shard; a fd is taken once. */
    assert_int_equal(upgrade_take(fds, 6, UPGRADE_FD_LISTEN, (struct sockaddr *)&want, NULL, 1),
                     13);
    assert_int_equal(upgrade_take(fds, 6, UPGRADE_FD_LISTEN, (struct sockaddr *)&want, NULL, 1),
                     -1);
    assert_int_equal(upgrade_take(fds, 6, UPGRADE_FD_LISTEN, (struct sockaddr *)&want, NULL, 0),
                     12);
    /* Another IP never matches; port 0 takes the first one left with the same IP. */
    assert_int_equal(upgrade_take(fds, 6, UPGRADE_FD_LISTEN, (struct sockaddr *)&other, NULL, 0),
                     -1);
    assert_int_equal(upgrade_take(fds, 6, UPGRADE_FD_LISTEN, (struct sockaddr *)&any, NULL, 0), 10);
    /* A kind never matches another: the admin address is not a listener. */
    struct sockaddr_storage adm = v4("127.0.0.1", 9180);
    assert_int_equal(upgrade_take(fds, 6, UPGRADE_FD_LISTEN, (struct sockaddr *)&adm, NULL, 0), -1);
    assert_int_equal(upgrade_take(fds, 6, UPGRADE_FD_ADMIN, (struct sockaddr *)&adm, NULL, 0), 14);
    assert_int_equal(upgrade_take(fds, 6, UPGRADE_FD_ADMIN_UNIX, NULL, "/run/other.sock", 0), -1);
    assert_int_equal(
        upgrade_take(fds, 6, UPGRADE_FD_ADMIN_UNIX, NULL, "/run/ringsocks/admin.sock", 0), 15);
    /* Nothing taken: NULL and zero sockets are fine (a normal start). */
    assert_int_equal(upgrade_take(NULL, 0, UPGRADE_FD_ADMIN, (struct sockaddr *)&adm, NULL, 0), -1);
}

/* Is fd open, and the same file as ino? */
static bool
same_file(int fd, ino_t ino)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_ino == ino;
}

/* 450 fds: three chunks of at most UPGRADE_FDS_PER_MSG; records and fds arrive in order. */
static void
test_roundtrip(void **state)
{
    (void)state;
    enum { N = 450 };
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    int big = 4 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    int pipes[N / 2][2];
    static struct upgrade_fd out[N];
    ino_t ino[N];
    for (int i = 0; i < N / 2; i++) {
        assert_int_equal(pipe(pipes[i]), 0);
        for (int k = 0; k < 2; k++) {
            int j = 2 * i + k;
            out[j] = listener(pipes[i][k], "10.0.0.1", (unsigned)(1000 + j), (unsigned)k);
            struct stat st;
            assert_int_equal(fstat(pipes[i][k], &st), 0);
            ino[j] = st.st_ino;
        }
    }
    assert_int_equal(upgrade_send_fds(sv[0], out, N, 2), 0);
    struct upgrade_fd *in = NULL;
    size_t n = 0;
    unsigned shards = 0;
    assert_int_equal(upgrade_recv_fds(sv[1], 1000, &in, &n, &shards), 0);
    assert_int_equal(n, N);
    assert_int_equal(shards, 2);
    for (int j = 0; j < N; j++) {
        assert_int_equal(in[j].rec.shard, (unsigned)(j % 2));
        assert_int_equal(ntohs(((struct sockaddr_in *)&in[j].rec.addr)->sin_port), 1000 + j);
        assert_true(same_file(in[j].fd, ino[j]));
        assert_int_not_equal(in[j].fd, out[j].fd);
    }
    assert_int_equal(upgrade_close_rest(in, n), N);
    assert_int_equal(upgrade_close_rest(in, n), 0);
    free(in);
    for (int j = 0; j < N; j++)
        close(out[j].fd);

    /* "ready" the other way, with the sender's pid; then EOF. */
    pid_t pid = 0;
    unsigned flags = 0;
    assert_int_equal(upgrade_recv_ready(sv[0], &pid, &flags), -EAGAIN);
    assert_int_equal(upgrade_send_ready(sv[1], UPGRADE_READY_ADMIN_UNIX), 0);
    assert_int_equal(upgrade_recv_ready(sv[0], &pid, &flags), 1);
    assert_int_equal(pid, getpid());
    assert_int_equal(flags, UPGRADE_READY_ADMIN_UNIX);
    close(sv[1]);
    assert_int_equal(upgrade_recv_ready(sv[0], &pid, &flags), 0);
    close(sv[0]);
}

/* A peer that sends the wrong thing, or nothing: an error, and no fd left open. */
static void
test_bad_peer(void **state)
{
    (void)state;
    int sv[2];
    struct upgrade_fd *in = NULL;
    size_t n = 0;
    unsigned shards = 0;

    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(upgrade_recv_fds(sv[1], 50, &in, &n, &shards), -ETIMEDOUT);
    /* "ready" where the sockets were expected. */
    assert_int_equal(upgrade_send_ready(sv[0], 0), 0);
    assert_int_equal(upgrade_recv_fds(sv[1], 1000, &in, &n, &shards), -EPROTO);
    /* An END whose count disagrees with what came: the fds received are closed. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct upgrade_fd one = listener(p[0], "127.0.0.1", 1, 0);
    assert_int_equal(upgrade_send_fds(sv[0], &one, 1, 1), 0);
    struct upgrade_hdr end = {.magic = UPGRADE_MAGIC, .type = UPGRADE_MSG_END, .n = 5};
    assert_int_equal(send(sv[0], &end, sizeof(end), 0), (ssize_t)sizeof(end));
    /* The first END (n 1) is taken; the second stays unread. */
    assert_int_equal(upgrade_recv_fds(sv[1], 1000, &in, &n, &shards), 0);
    assert_int_equal(n, 1);
    upgrade_close_rest(in, n);
    free(in);
    assert_int_equal(upgrade_recv_fds(sv[1], 1000, &in, &n, &shards), -EPROTO);
    /* Garbage magic: a protocol error too; the sender closing early is one. */
    struct upgrade_hdr junk = {.magic = 1, .type = UPGRADE_MSG_FDS};
    assert_int_equal(send(sv[0], &junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    assert_int_equal(upgrade_recv_fds(sv[1], 1000, &in, &n, &shards), -EPROTO);
    close(sv[0]);
    assert_int_equal(upgrade_recv_fds(sv[1], 1000, &in, &n, &shards), -EPROTO);
    close(sv[1]);
    close(p[0]);
    close(p[1]);
}

static void
test_self_exe(void **state)
{
    (void)state;
    char path[4096], tiny[4];
    assert_int_equal(upgrade_self_exe(path, sizeof(path)), 0);
    assert_true(path[0] == '/');
    assert_non_null(strstr(path, "test_upgrade"));
    assert_int_equal(upgrade_self_exe(tiny, sizeof(tiny)), -ENAMETOOLONG);
}

struct seen {
    char names[4][16];
    uint64_t bytes[4];
    int n;
};

static void
note(void *arg, const char *name, uint64_t bytes)
{
    struct seen *s = arg;
    if (s->n < 4) {
        snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
        s->bytes[s->n] = bytes;
    }
    s->n++;
}

/* The quota bytes at the old process's exit: entries packed, cut where they do not fit. */
static void
test_used(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = 0;
    assert_true(upgrade_used_add(buf, &len, sizeof(buf), "alice", 123456789012ull));
    assert_true(upgrade_used_add(buf, &len, sizeof(buf), "", 1));
    assert_true(upgrade_used_add(buf, &len, sizeof(buf), "bob-session-x", 7));
    assert_int_equal(len, 10 + 5 + 10 + 0 + 10 + 13);
    /* 48 of 64 bytes used: a 7-byte name needs 17 more. */
    assert_false(upgrade_used_add(buf, &len, sizeof(buf), "charlie", 9));
    assert_int_equal(len, 48);
    struct seen s = {.n = 0};
    assert_int_equal(upgrade_used_parse(buf, len, note, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.names[0], "alice");
    assert_true(s.bytes[0] == 123456789012ull);
    assert_string_equal(s.names[1], "");
    assert_string_equal(s.names[2], "bob-session-x");
    assert_true(s.bytes[2] == 7);
    /* Cut in an entry: the ones before it count, then -EPROTO. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(upgrade_used_parse(buf, len - 1, note, &s), -EPROTO);
    assert_int_equal(s.n, 2);
    memset(&s, 0, sizeof(s));
    assert_int_equal(upgrade_used_parse(buf, 9, note, &s), -EPROTO);
    assert_int_equal(s.n, 0);

    /* Over a socket pair, then EOF; another kind of message is refused. */
    int sv[2];
    uint8_t in[UPGRADE_USED_MAX];
    size_t got = 0;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(upgrade_recv_used(sv[1], in, sizeof(in), &got), -EAGAIN);
    assert_int_equal(upgrade_send_used(sv[0], buf, len), 0);
    assert_int_equal(upgrade_recv_used(sv[1], in, sizeof(in), &got), 1);
    assert_int_equal(got, len);
    assert_memory_equal(in, buf, len);
    assert_int_equal(upgrade_send_ready(sv[0], 0), 0);
    assert_int_equal(upgrade_recv_used(sv[1], in, sizeof(in), &got), -EPROTO);
    close(sv[0]);
    assert_int_equal(upgrade_recv_used(sv[1], in, sizeof(in), &got), 0);
    close(sv[1]);
}

static void
test_child_fd(void **state)
{
    (void)state;
    unsetenv(UPGRADE_ENV);
    assert_int_equal(upgrade_child_fd(), -1);
    int fd = dup(2); /* not close-on-exec, as the spawn's dup2() leaves it */
    char num[16];
    snprintf(num, sizeof(num), "%d", fd);
    setenv(UPGRADE_ENV, num, 1);
    assert_int_equal(upgrade_child_fd(), fd);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);
    assert_null(getenv(UPGRADE_ENV)); /* nothing started later inherits it */
    setenv(UPGRADE_ENV, "3x", 1);
    assert_int_equal(upgrade_child_fd(), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take),     cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_bad_peer), cmocka_unit_test(test_self_exe),
        cmocka_unit_test(test_used),     cmocka_unit_test(test_child_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
