/*
 * gss_pump.c - the shard's GSS-API worker (src/gssw.c) against a real initiator, for
 * tests/integration/cases_krb.py. One process: the client side is MIT's
 * gss_init_sec_context on the credential cache KRB5CCNAME names (gss_client.h); the
 * server side is the real worker, started with gssw_init() on a zeroed struct shard with
 * a real io_uring. Jobs go in with gssw_submit(); answers come back through the ring
 * (OP_GSS) and gssw_on_cqe(), which calls conn_gss(): defined here, it keeps the answer.
 *
 *   gss-pump --service S --target T [--keytab K] [--mib N] [--skip-slow 1]
 *
 * Checks the protection-level grant rules (wrapped and NEC), then protected tunnels at
 * levels 1 and 2: N MiB each way with checksums and half-closes in both orders, bytes
 * the client sent before the tunnel existed, damaged, integrity-only (level 2),
 * oversized, empty and truncated frames ending the tunnel, and the shard closing its end
 * with and without a client that reads (the second bounded by the worker's 30 s grace;
 * --skip-slow 1 leaves it out). Prints MB/s each way at each level and the largest
 * message the worker wrapped.
 * Exit: 0 every check passed, 1 the acceptor refused the context, 2 a check failed,
 * 3 the client side failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gss_client.h"
#include "gssframe.h"
#include "gssw.h"
#include "shard_types.h"
#include "ud.h"

#define EXIT_REFUSED   1
#define EXIT_BROKEN    2
#define EXIT_INITIATOR 3

static struct shard sh;
static struct gssw_job *answer;
static struct gssacc_cred *cred;
static const char *target;
static int lsn = -1; /* loopback listener: the clients' TCP connections */
static int failed;
static size_t largest_down; /* the largest payload the worker wrapped */

bool
conn_gss(struct shard *s, uint64_t ref, struct gssw_job *j)
{
    (void)s;
    (void)ref;
    answer = j;
    return true;
}

static void
ok(int cond, const char *what)
{
    if (check(cond, what) < 0)
        failed = 1;
}

static double
now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Submit j and wait for its answer through the ring, as a shard would. */
static struct gssw_job *
ask(struct gssw_job *j)
{
    answer = NULL;
    gssw_submit(&sh, j);
    while (!answer) {
        struct io_uring_cqe *cqe;
        io_uring_submit(&sh.ring);
        if (io_uring_wait_cqe(&sh.ring, &cqe) < 0)
            continue;
        unsigned op = ud_op(cqe->user_data);
        io_uring_cqe_seen(&sh.ring, cqe);
        if (op == OP_GSS)
            gssw_on_cqe(&sh);
    }
    return answer;
}

static struct gssw_stats
stats(void)
{
    struct gssw_stats s;
    gssw_stats_read(&sh, &s);
    return s;
}

/* Wait up to secs for the open-tunnel gauge to come down to n; the time it took, or -1. */
static double
wait_open(uint64_t n, double secs)
{
    double t0 = now_mono();
    while (now_mono() - t0 < secs) {
        if (stats().open == n)
            return now_mono() - t0;
        usleep(10000);
    }
    return -1;
}

static void
free_sess(struct gssw_sess *s)
{
    gssw_submit(&sh, gssw_job_new(s, GSSW_FREE, 0));
}

/* A context for the client cl, through the worker; NULL (reported) when it fails. */
static struct gssw_sess *
establish(struct client *cl, int *rc)
{
    static uint8_t back[GSSACC_TOKEN_MAX];
    size_t back_len = 0;
    bool done = false;
    *rc = EXIT_BROKEN;
    if (client_open(cl, target) < 0) {
        *rc = EXIT_INITIATOR;
        return NULL;
    }
    struct gssw_sess *s = gssw_sess_new(cred);
    for (int round = 0; round < 10; round++) {
        gss_buffer_desc tok = GSS_C_EMPTY_BUFFER;
        OM_uint32 minor, major = client_step(cl, back, back_len, &tok);
        if (GSS_ERROR(major)) {
            *rc = EXIT_INITIATOR;
            break;
        }
        if (!(major & GSS_S_CONTINUE_NEEDED) && done) {
            gss_release_buffer(&minor, &tok);
            return s;
        }
        struct gssw_job *j = gssw_job_new(s, GSSW_ACCEPT, 42);
        memcpy(j->in, tok.value, tok.length);
        j->in_len = (uint32_t)tok.length;
        j->strip_realm = false;
        gss_release_buffer(&minor, &tok);
        ask(j);
        if (j->res < 0) {
            printf("refused: %s\n", j->err);
            *rc = EXIT_REFUSED;
            gssw_job_free(j);
            break;
        }
        if (j->res == 1) {
            done = true;
            if (!strstr(j->name, "@EXAMPLE.TEST") || !j->can_integ || !j->can_conf)
                ok(0, "the complete context names the client and can protect");
        }
        memcpy(back, j->out, j->out_len);
        back_len = j->out_len;
        gssw_job_free(j);
    }
    free_sess(s);
    client_close(cl);
    return NULL;
}

/* The protection-level message asking for asked (NEC: the bare octet, else wrapped with
 * conf FALSE, or two octets when twice); the level granted, -1 refused, -2 a bad reply. */
static int
level(struct client *cl, struct gssw_sess *s, uint8_t asked, uint8_t mask, bool nec, bool twice)
{
    struct gssw_job *j = gssw_job_new(s, GSSW_LEVEL, 43);
    uint8_t msg[2] = {asked, asked};
    OM_uint32 minor;
    j->levels = mask;
    j->nec = nec;
    if (nec) {
        j->in[0] = asked;
        j->in_len = 1;
    } else {
        gss_buffer_desc in = {twice ? 2 : 1, msg}, tok = GSS_C_EMPTY_BUFFER;
        int conf;
        if (GSS_ERROR(gss_wrap(&minor, cl->ctx, 0, GSS_C_QOP_DEFAULT, &in, &conf, &tok)))
            return -2;
        memcpy(j->in, tok.value, tok.length);
        j->in_len = (uint32_t)tok.length;
        gss_release_buffer(&minor, &tok);
    }
    ask(j);
    int res = j->res < 0 ? -1 : j->res;
    if (j->asked != asked && !twice)
        res = -2;
    if (res >= 0) {
        if (nec) {
            if (j->out_len != 1 || j->out[0] != res)
                res = -2;
        } else {
            gss_buffer_desc t = {j->out_len, j->out}, out = GSS_C_EMPTY_BUFFER;
            int conf = 1;
            if (gss_unwrap(&minor, cl->ctx, &t, &out, &conf, NULL) != GSS_S_COMPLETE ||
                out.length != 1 || ((uint8_t *)out.value)[0] != res || conf)
                res = -2;
            gss_release_buffer(&minor, &out);
        }
    }
    gssw_job_free(j);
    return res;
}

static int
grants(void)
{
    static const struct {
        uint8_t asked, mask;
        int want;
    } rows[] = {
        {0, 7, 0}, {1, 7, 1}, {2, 7, 2},  {3, 7, 2},  {2, 1, 0},  {2, 3, 1},
        {0, 6, 1}, {0, 4, 2}, {1, 5, 0},  {3, 2, 1},  {1, 4, 2},  {3, 1, 0},
        {1, 1, 0}, {0, 1, 0}, {2, 0, -1}, {0, 0, -1}, {4, 7, -1}, {0xff, 7, -1},
    };
    struct client cl;
    int rc;
    struct gssw_sess *s = establish(&cl, &rc);
    if (!s)
        return rc;
    struct gssw_stats before = stats();
    unsigned refused = 0;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        for (int nec = 0; nec < 2; nec++) {
            int got = level(&cl, s, rows[i].asked, rows[i].mask, nec, false);
            char what[128];
            snprintf(what, sizeof(what),
                     "level asked %u, allowed mask %u, %s: granted %d (want %d)", rows[i].asked,
                     rows[i].mask, nec ? "NEC" : "wrapped", got, rows[i].want);
            ok(got == rows[i].want, what);
            refused += got < 0;
        }
    }
    ok(level(&cl, s, 1, 7, false, true) == -1, "a wrapped level message of two octets is refused");
    refused++;
    struct gssw_stats after = stats();
    ok(after.level_refused - before.level_refused == refused, "level_refused counts the refusals");
    ok(after.levels[2] - before.levels[2] == 2 * 4, "levels{2} counts the grants of level 2");
    free_sess(s);
    client_close(&cl);

    /* A token no mechanism takes: refused with the library's words, the session kept. */
    s = gssw_sess_new(cred);
    struct gssw_job *j = gssw_job_new(s, GSSW_ACCEPT, 44);
    memcpy(j->in, "\x60\x05garbage", 9);
    j->in_len = 9;
    ask(j);
    ok(j->res < 0 && j->err[0], "a garbage context token is refused, with a reason");
    printf("  (%s)\n", j->err);
    gssw_job_free(j);
    j = gssw_job_new(s, GSSW_LEVEL, 45);
    j->nec = true;
    j->in[0] = 1;
    j->in_len = 1;
    j->levels = 7;
    ask(j);
    ok(j->res < 0, "a protection level before the context is complete is refused");
    gssw_job_free(j);
    free_sess(s);
    return 0;
}

/* --- tunnels ---------------------------------------------------------------------------- */

struct tun {
    struct client cl;
    int lvl;
    int c; /* the client's TCP end */
    int s; /* the shard's end of the pair */
};

static int
client_frame(struct tun *t, const uint8_t *p, size_t n, int conf, uint8_t *out)
{
    gss_buffer_desc in = {n, (void *)p}, tok = GSS_C_EMPTY_BUFFER;
    OM_uint32 minor;
    int st;
    if (GSS_ERROR(gss_wrap(&minor, t->cl.ctx, conf, GSS_C_QOP_DEFAULT, &in, &st, &tok)))
        return -1;
    gssframe_header(out, GSSFRAME_MTYP_DATA, tok.length);
    memcpy(out + GSSFRAME_HDR_LEN, tok.value, tok.length);
    int len = (int)(GSSFRAME_HDR_LEN + tok.length);
    gss_release_buffer(&minor, &tok);
    return len;
}

static void
nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Submit a GSSW_PROTECT and wait until the worker has taken the tunnel (no answer comes). */
static void
handover(struct gssw_job *j)
{
    uint64_t n = stats().tunnels;
    gssw_submit(&sh, j);
    for (int i = 0; i < 500 && stats().tunnels == n; i++)
        usleep(1000);
}

/* A tunnel at level lvl, the client having sent pre[0..pre_len) before it was handed over. */
/*
 * Set by a case that needs the worker itself to hold bytes for a client that reads nothing:
 * the client's receive buffer and the worker's send buffer towards it are then 64 KiB, not
 * autotuned (with tcp_wmem's 4 MiB maximum the kernel alone would take everything the shard
 * wrote, and the worker would have nothing left when the shard closes).
 */
static bool small_client_bufs;

static int
tunnel(struct tun *t, int lvl, const uint8_t *pre, size_t pre_len)
{
    int rc;
    memset(t, 0, sizeof(*t));
    struct gssw_sess *s = establish(&t->cl, &rc);
    if (!s)
        return rc;
    t->lvl = lvl;
    if (level(&t->cl, s, (uint8_t)lvl, 7, false, false) != lvl) {
        ok(0, "level granted for the tunnel");
        return EXIT_BROKEN;
    }
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    getsockname(lsn, (struct sockaddr *)&a, &al);
    t->c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(t->c, (struct sockaddr *)&a, al) < 0)
        return EXIT_BROKEN;
    int cfd = accept4(lsn, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    int sp[2];
    if (cfd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
        return EXIT_BROKEN;
    if (small_client_bufs) {
        int small = 65536;
        setsockopt(t->c, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        setsockopt(cfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    }
    t->s = sp[0];
    struct gssw_job *j = gssw_job_new(s, GSSW_PROTECT, 46);
    j->cfd = cfd;
    j->pfd = sp[1];
    if (pre_len)
        memcpy(j->in, pre, pre_len);
    j->in_len = (uint32_t)pre_len;
    handover(j);
    return 0;
}

static void
tunnel_close(struct tun *t)
{
    close(t->c);
    close(t->s);
    client_close(&t->cl);
}

/* Read exactly n bytes from fd within 5 s (blocking fd). */
static bool
read_n(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 5000) <= 0)
            return false;
        ssize_t r = read(fd, p + got, n - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

/* Does fd read EOF (or a reset) within secs, after whatever data? */
static bool
ends(int fd, double secs)
{
    uint8_t buf[65536];
    double t0 = now_mono();
    while (now_mono() - t0 < secs) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
            return true;
    }
    return false;
}

/* Receive one frame on the client and unwrap it into out (cap bytes); its length or -1. */
static ssize_t
client_recv(struct tun *t, uint8_t *out, size_t cap)
{
    static uint8_t fr[GSSFRAME_HDR_LEN + GSSFRAME_TOKEN_MAX];
    struct gssframe f;
    if (!read_n(t->c, fr, GSSFRAME_HDR_LEN))
        return -1;
    size_t len = (size_t)fr[2] << 8 | fr[3];
    if (!read_n(t->c, fr + GSSFRAME_HDR_LEN, len) ||
        gssframe_feed(&f, fr, GSSFRAME_HDR_LEN + len, GSSFRAME_EXPECT_DATA, 65535) <= 0)
        return -1;
    gss_buffer_desc tok = {len, fr + GSSFRAME_HDR_LEN}, pl = GSS_C_EMPTY_BUFFER;
    OM_uint32 minor;
    int conf;
    if (gss_unwrap(&minor, t->cl.ctx, &tok, &pl, &conf, NULL) != GSS_S_COMPLETE ||
        conf != (t->lvl == 2) || pl.length > cap)
        return -1;
    memcpy(out, pl.value, pl.length);
    ssize_t n = (ssize_t)pl.length;
    gss_release_buffer(&minor, &pl);
    return n;
}

/* --- bulk: N MiB each way, checksummed ---------------------------------------------------- */

struct stream {
    uint64_t rng, hash;
    uint64_t left; /* bytes still to generate */
};

static uint8_t
stream_byte(struct stream *st)
{
    st->rng ^= st->rng << 13;
    st->rng ^= st->rng >> 7;
    st->rng ^= st->rng << 17;
    return (uint8_t)st->rng;
}

static void
fnv(uint64_t *h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ p[i]) * 0x100000001b3ull;
}

/*
 * bytes up (client -> shard end) and down (shard end -> client), one direction after the
 * other: up_first sends up, shuts the client's side, and checks the shard end reads EOF
 * before down starts (and the reverse). Seconds each direction took in secs[0] (up) and
 * secs[1] (down).
 */
static bool
bulk(struct tun *t, uint64_t bytes, bool up_first, double secs[2])
{
    static uint8_t frame[GSSFRAME_HDR_LEN + GSSFRAME_TOKEN_MAX], rbuf[1 << 17];
    static uint8_t cin[GSSFRAME_HDR_LEN + GSSFRAME_TOKEN_MAX + (1 << 17)];
    struct stream up = {0x9e3779b97f4a7c15ull, 0xcbf29ce484222325ull, bytes};
    struct stream dn = {0x2545f4914f6cdd1dull, 0xcbf29ce484222325ull, bytes};
    uint64_t up_hash = 0xcbf29ce484222325ull, dn_hash = 0xcbf29ce484222325ull;
    uint64_t up_got = 0, dn_got = 0;
    size_t f_off = 0, f_len = 0, cin_len = 0;
    uint8_t plain[32768], dplain[32768];
    size_t d_off = 0, d_len = 0;
    bool up_on = up_first, dn_on = !up_first, up_shut = false, dn_shut = false;
    bool s_eof = false, c_eof = false;
    double t0 = now_mono(), phase0 = t0;
    nonblock(t->c);
    nonblock(t->s);
    while (!(s_eof && c_eof)) {
        if (now_mono() - t0 > 60)
            return false;
        struct pollfd pf[2] = {{t->c, POLLIN, 0}, {t->s, POLLIN, 0}};
        if (up_on && !up_shut)
            pf[0].events |= POLLOUT;
        if (dn_on && !dn_shut)
            pf[1].events |= POLLOUT;
        poll(pf, 2, 1000);
        /* up: frames of 1..32768 plain bytes, wrapped by the client */
        while (up_on && !up_shut) {
            if (f_off == f_len) {
                if (up.left == 0) {
                    shutdown(t->c, SHUT_WR);
                    up_shut = true;
                    break;
                }
                size_t n = 1 + (size_t)(up.rng % 32768);
                if (n > up.left)
                    n = (size_t)up.left;
                for (size_t i = 0; i < n; i++)
                    plain[i] = stream_byte(&up);
                fnv(&up.hash, plain, n);
                up.left -= n;
                int fl = client_frame(t, plain, n, t->lvl == 2, frame);
                if (fl < 0)
                    return false;
                f_off = 0;
                f_len = (size_t)fl;
            }
            ssize_t w = send(t->c, frame + f_off, f_len - f_off, MSG_NOSIGNAL);
            if (w < 0)
                break;
            f_off += (size_t)w;
        }
        /* down: plain bytes into the shard's end */
        while (dn_on && !dn_shut) {
            if (d_off == d_len) {
                if (dn.left == 0) {
                    shutdown(t->s, SHUT_WR);
                    dn_shut = true;
                    break;
                }
                size_t n = dn.left < sizeof(dplain) ? (size_t)dn.left : sizeof(dplain);
                for (size_t i = 0; i < n; i++)
                    dplain[i] = stream_byte(&dn);
                fnv(&dn.hash, dplain, n);
                dn.left -= n;
                d_off = 0;
                d_len = n;
            }
            ssize_t w = send(t->s, dplain + d_off, d_len - d_off, MSG_NOSIGNAL);
            if (w < 0)
                break;
            d_off += (size_t)w;
        }
        /* the shard's end reads what the client sent */
        for (;;) {
            ssize_t r = read(t->s, rbuf, sizeof(rbuf));
            if (r < 0)
                break;
            if (r == 0) {
                if (!s_eof) {
                    s_eof = true;
                    secs[0] = now_mono() - phase0;
                    phase0 = now_mono();
                    if (!up_shut || up_got != bytes || up_hash != up.hash)
                        return false;
                    dn_on = true;
                }
                break;
            }
            fnv(&up_hash, rbuf, (size_t)r);
            up_got += (size_t)r;
        }
        /* the client reads and unwraps the worker's frames */
        for (;;) {
            ssize_t r = read(t->c, cin + cin_len, sizeof(cin) - cin_len);
            if (r < 0)
                break;
            if (r == 0) {
                if (!c_eof) {
                    c_eof = true;
                    secs[1] = now_mono() - phase0;
                    phase0 = now_mono();
                    if (cin_len || !dn_shut || dn_got != bytes || dn_hash != dn.hash)
                        return false;
                    up_on = true;
                }
                break;
            }
            cin_len += (size_t)r;
            size_t at = 0;
            struct gssframe f;
            ssize_t n;
            while ((n = gssframe_feed(&f, cin + at, cin_len - at, GSSFRAME_EXPECT_DATA, 65535)) >
                   0) {
                gss_buffer_desc tok = {f.len, cin + at + GSSFRAME_HDR_LEN}, pl = GSS_C_EMPTY_BUFFER;
                OM_uint32 minor;
                int conf;
                if (gss_unwrap(&minor, t->cl.ctx, &tok, &pl, &conf, NULL) != GSS_S_COMPLETE ||
                    conf != (t->lvl == 2))
                    return false;
                fnv(&dn_hash, pl.value, pl.length);
                dn_got += pl.length;
                if (pl.length > largest_down)
                    largest_down = pl.length;
                gss_release_buffer(&minor, &pl);
                at += (size_t)n;
            }
            if (n < 0)
                return false;
            memmove(cin, cin + at, cin_len - at);
            cin_len -= at;
        }
    }
    return up_got == bytes && dn_got == bytes;
}

static int
bulk_cases(uint64_t mib)
{
    for (int lvl = 1; lvl <= 2; lvl++) {
        for (int order = 0; order < 2; order++) {
            struct tun t;
            int rc = tunnel(&t, lvl, NULL, 0);
            if (rc)
                return rc;
            uint64_t open0 = stats().open;
            double secs[2] = {0, 0};
            char what[160];
            bool good = bulk(&t, mib << 20, order == 0, secs);
            snprintf(what, sizeof(what),
                     "level %d: %llu MiB each way checksummed, %s half-closed first, the other "
                     "direction going on after it",
                     lvl, (unsigned long long)mib,
                     order == 0 ? "the client's side" : "the shard's side");
            ok(good, what);
            if (good)
                printf("level %d %s first: up %.1f MB/s, down %.1f MB/s\n", lvl,
                       order == 0 ? "up" : "down", (double)(mib << 20) / secs[0] / 1e6,
                       (double)(mib << 20) / secs[1] / 1e6);
            snprintf(what, sizeof(what), "level %d: the tunnel ends once EOF went both ways", lvl);
            ok(wait_open(open0 - 1, 5) >= 0, what);
            tunnel_close(&t);
        }
    }
    printf("largest message the worker wrapped: %zu bytes\n", largest_down);
    ok(largest_down == 16384, "the worker wraps at most 16 KiB per message");
    return 0;
}

/* Bytes the client sent with its level message: a whole frame and part of the next. */
static int
prefix_case(void)
{
    struct tun t;
    int rc;
    /* The frames are made with the tunnel's own context: establish first, then hand over. */
    memset(&t, 0, sizeof(t));
    struct gssw_sess *s = establish(&t.cl, &rc);
    if (!s)
        return rc;
    t.lvl = 2;
    if (level(&t.cl, s, 2, 7, true, false) != 2)
        return EXIT_BROKEN;
    static uint8_t fr[2][GSSFRAME_HDR_LEN + 1024];
    int n0 = client_frame(&t, (const uint8_t *)"hello ", 6, 1, fr[0]);
    int n1 = client_frame(&t, (const uint8_t *)"world", 5, 1, fr[1]);
    uint8_t pre[2048];
    memcpy(pre, fr[0], (size_t)n0);
    memcpy(pre + n0, fr[1], 3);
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    getsockname(lsn, (struct sockaddr *)&a, &al);
    t.c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(t.c, (struct sockaddr *)&a, al) < 0)
        return EXIT_BROKEN;
    int cfd = accept4(lsn, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    int sp[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp);
    t.s = sp[0];
    struct gssw_job *j = gssw_job_new(s, GSSW_PROTECT, 47);
    j->cfd = cfd;
    j->pfd = sp[1];
    memcpy(j->in, pre, (size_t)n0 + 3);
    j->in_len = (uint32_t)n0 + 3;
    handover(j);
    uint64_t open0 = stats().open - 1;
    uint8_t got[12] = {0};
    ok(read_n(t.s, got, 6) && memcmp(got, "hello ", 6) == 0,
       "a frame the client sent before the hand-over arrives");
    send(t.c, fr[1] + 3, (size_t)n1 - 3, MSG_NOSIGNAL);
    ok(read_n(t.s, got, 5) && memcmp(got, "world", 5) == 0,
       "a frame begun before the hand-over and ended after it arrives");
    /* The shard answers and closes (a refusal): the client gets the answer, then EOF. */
    send(t.s, "refused", 7, MSG_NOSIGNAL);
    close(t.s);
    t.s = -1;
    ssize_t r = client_recv(&t, got, sizeof(got));
    ok(r == 7 && memcmp(got, "refused", 7) == 0, "what the shard wrote before closing arrives");
    ok(ends(t.c, 3), "then the client reads EOF");
    ok(wait_open(open0, 3) >= 0, "and the tunnel is gone");
    close(t.c);
    client_close(&t.cl);
    return 0;
}

/* A tunnel that the client's bad input ends: the shard's end reads EOF, frame_errors + 1. */
static int
bad_case(int lvl, const char *what, int kind)
{
    struct tun t;
    int rc = tunnel(&t, lvl, NULL, 0);
    if (rc)
        return rc;
    static uint8_t fr[GSSFRAME_HDR_LEN + GSSFRAME_TOKEN_MAX];
    uint8_t got[8];
    struct gssw_stats before = stats();
    int n = client_frame(&t, (const uint8_t *)"ok", 2, t.lvl == 2, fr);
    send(t.c, fr, (size_t)n, MSG_NOSIGNAL);
    bool first = read_n(t.s, got, 2) && memcmp(got, "ok", 2) == 0;
    switch (kind) {
    case 0: /* damaged */
        n = client_frame(&t, (const uint8_t *)"evil", 4, t.lvl == 2, fr);
        fr[n - 1] ^= 0x40;
        send(t.c, fr, (size_t)n, MSG_NOSIGNAL);
        break;
    case 1: /* integrity only */
        n = client_frame(&t, (const uint8_t *)"plain", 5, 0, fr);
        send(t.c, fr, (size_t)n, MSG_NOSIGNAL);
        break;
    case 2: /* the longest length there is, and no token behind it worth anything */
        gssframe_header(fr, GSSFRAME_MTYP_DATA, GSSFRAME_TOKEN_MAX);
        memset(fr + GSSFRAME_HDR_LEN, 0x5a, GSSFRAME_TOKEN_MAX);
        send(t.c, fr, GSSFRAME_HDR_LEN + GSSFRAME_TOKEN_MAX, MSG_NOSIGNAL);
        break;
    case 3: /* an empty token */
        send(t.c, "\x01\x03\x00\x00", 4, MSG_NOSIGNAL);
        break;
    case 4: /* EOF inside a frame */
        send(t.c, "\x01\x03\x00", 3, MSG_NOSIGNAL);
        shutdown(t.c, SHUT_WR);
        break;
    case 5: /* not version 1 */
        send(t.c, "\x05\x01\x00\x01", 4, MSG_NOSIGNAL);
        break;
    case 6: /* the same frame again: a replay */
        send(t.c, fr, (size_t)n, MSG_NOSIGNAL);
        break;
    }
    bool gone = ends(t.s, 5) && ends(t.c, 5);
    struct gssw_stats after = stats();
    char line[160];
    snprintf(line, sizeof(line), "level %d: %s ends the tunnel (frame_errors %llu -> %llu)", lvl,
             what, (unsigned long long)before.frame_errors, (unsigned long long)after.frame_errors);
    ok(first && gone && after.frame_errors == before.frame_errors + 1, line);
    tunnel_close(&t);
    return 0;
}

/* The shard closes its end while the client reads nothing: gone within the grace. */
static int
stalled_case(void)
{
    struct tun t;
    small_client_bufs = true;
    int rc = tunnel(&t, 1, NULL, 0);
    small_client_bufs = false;
    if (rc)
        return rc;
    uint64_t open0 = stats().open;
    static uint8_t junk[65536];
    nonblock(t.s);
    double quiet = 0, t0 = now_mono();
    /* Fill the client's socket, the worker's buffer and the pair until nothing moves. */
    size_t sent = 0;
    while (now_mono() - t0 < 10) {
        ssize_t w = send(t.s, junk, sizeof(junk), MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            quiet = now_mono();
        } else if (now_mono() - quiet > 0.5) {
            break;
        } else {
            usleep(10000);
        }
    }
    close(t.s);
    t.s = -1;
    double t1 = now_mono();
    double took = wait_open(open0 - 1, 35);
    printf("the shard closed with %zu bytes written, the client reading none: tunnel gone after "
           "%.1f s\n",
           sent, took < 0 ? -1 : took);
    ok(took >= 25 && took <= 33, "a tunnel the shard closed is gone within 30 s (+ the 1 s timer)");
    (void)t1;
    close(t.c);
    client_close(&t.cl);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *service = NULL, *keytab = NULL;
    uint64_t mib = 4;
    bool skip_slow = false;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--service") == 0)
            service = argv[i + 1];
        else if (strcmp(argv[i], "--target") == 0)
            target = argv[i + 1];
        else if (strcmp(argv[i], "--keytab") == 0)
            keytab = argv[i + 1];
        else if (strcmp(argv[i], "--mib") == 0)
            mib = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--skip-slow") == 0)
            skip_slow = strcmp(argv[i + 1], "0") != 0;
        else
            goto usage;
    }
    if (!target)
        goto usage;
    setvbuf(stdout, NULL, _IOLBF, 0);
    char err[GSSACC_ERR_MAX];
    if (gssacc_cred_open(&cred, service, keytab, err, sizeof(err)) < 0) {
        printf("refused: cred: %s\n", err);
        return EXIT_REFUSED;
    }
    if (io_uring_queue_init(8, &sh.ring, 0) < 0 || gssw_init(&sh) < 0)
        return EXIT_BROKEN;
    gssw_arm(&sh);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    lsn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (bind(lsn, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lsn, 8) < 0)
        return EXIT_BROKEN;

    int rc = grants();
    if (!rc)
        rc = prefix_case();
    if (!rc)
        rc = bulk_cases(mib);
    static const char *const bad[] = {
        "a damaged frame",  "an integrity-only frame", "a 65535-octet token of garbage",
        "an empty token",   "EOF inside a frame",      "a frame of another version",
        "a replayed frame",
    };
    for (int k = 0; !rc && k < 7; k++)
        rc = bad_case(k == 1 ? 2 : 1 + k % 2, bad[k], k);
    if (!rc && !skip_slow)
        rc = stalled_case();

    struct gssw_stats st = stats();
    printf(
        "stats: contexts %llu refused %llu levels %llu/%llu/%llu level_refused %llu tunnels %llu "
        "open %llu wrapped %llu unwrapped %llu frame_errors %llu\n",
        (unsigned long long)st.contexts, (unsigned long long)st.refused,
        (unsigned long long)st.levels[0], (unsigned long long)st.levels[1],
        (unsigned long long)st.levels[2], (unsigned long long)st.level_refused,
        (unsigned long long)st.tunnels, (unsigned long long)st.open, (unsigned long long)st.wrapped,
        (unsigned long long)st.unwrapped, (unsigned long long)st.frame_errors);
    if (!rc)
        ok(st.open == 0 && st.contexts >= 13 && st.refused >= 1 && st.wrapped > 0 &&
               st.unwrapped > 0,
           "the counters add up");
    sh.stopping = true;
    gssw_fini(&sh);
    io_uring_queue_exit(&sh.ring);
    gssacc_cred_free(cred);
    close(lsn);
    if (rc)
        return rc;
    return failed ? EXIT_BROKEN : 0;
usage:
    fprintf(stderr, "usage: gss-pump --service S --target T [--keytab K] [--mib N] "
                    "[--skip-slow 1]\n");
    return EXIT_BROKEN;
}
