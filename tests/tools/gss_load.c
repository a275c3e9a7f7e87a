/*
 * gss_load.c - load for the GSS-API benchmark (bench/gss.sh): SOCKS5 handshakes by
 * GSS-API, password or no authentication, and one tunnel's throughput at a protection
 * level, against a proxy on 127.0.0.1. It runs its own echo target on a free loopback
 * port (one thread per connection), so every figure goes through the proxy to it.
 *
 *   gss-load hs   --port P --method gssapi|password|none [--service S] [--user U --pass W]
 *                 [--count N] [--threads T] [--level L]
 *       N handshakes in T threads, each: connect, greeting, authentication (GSS-API: the
 *       context and protection level L, 0 by default), CONNECT to the echo, one byte each
 *       way (wrapped at levels 1 and 2), close. Prints "handshakes=N seconds=S rate=R".
 *   gss-load bulk --port P --level L [--service S] [--bytes B]
 *       one GSS-API tunnel at level L: B bytes to the echo and back, in 16 KiB messages
 *       (each wrapped at levels 1 and 2), checked. Prints "bytes=B seconds=S mbps=M".
 *
 * S is the service the client asks a ticket for (default rcmd/localhost); the credential
 * cache is KRB5CCNAME's, the realm KRB5_CONFIG's (tests/integration/krb.py).
 * Exit 0 when every handshake or byte went through, 1 otherwise (the reason on stderr).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gss_client.h"
#include "gssframe.h"

#define CHUNK 16384

static const char *method = "gssapi", *service = "rcmd/localhost", *user = "", *pass = "";
static int proxy_port, echo_port, level;
static atomic_long left;
static atomic_int failed;

static void
fail(const char *what)
{
    if (atomic_fetch_add(&failed, 1) == 0)
        fprintf(stderr, "gss-load: %s\n", what);
}

static double
now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* --- the echo target ------------------------------------------------------------------ */

static void *
echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static __thread uint8_t buf[65536];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    close(fd);
    return NULL;
}

static void *
echo_accept(void *arg)
{
    int ls = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&a, 256 * 1024);
        if (pthread_create(&t, &a, echo_conn, (void *)(intptr_t)fd) != 0)
            close(fd);
        pthread_attr_destroy(&a);
    }
    return NULL;
}

static int
echo_start(void)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1024) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &len) < 0)
        return -1;
    echo_port = ntohs(a.sin_port);
    pthread_t t;
    return pthread_create(&t, NULL, echo_accept, (void *)(intptr_t)ls) == 0 ? 0 : -1;
}

/* --- the client --------------------------------------------------------------------------- */

static bool
read_n(int fd, uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static bool
write_n(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* One RFC 1961 message: header and token. */
static bool
send_msg(int fd, uint8_t mtyp, const void *tok, size_t n)
{
    uint8_t h[GSSFRAME_HDR_LEN];
    return gssframe_header(h, mtyp, n) == GSSFRAME_HDR_LEN && write_n(fd, h, sizeof(h)) &&
           write_n(fd, tok, n);
}

/* The next message, of type mtyp: its token in tok (GSSFRAME_TOKEN_MAX bytes), length back. */
static ssize_t
read_msg(int fd, uint8_t mtyp, uint8_t *tok)
{
    uint8_t h[GSSFRAME_HDR_LEN];
    if (!read_n(fd, h, 2) || h[0] != GSSFRAME_VER || h[1] != mtyp || !read_n(fd, h + 2, 2))
        return -1;
    size_t n = (size_t)h[2] << 8 | h[3];
    return read_n(fd, tok, n) ? (ssize_t)n : -1;
}

static bool
wrap(struct client *cl, bool conf, const void *p, size_t n, gss_buffer_desc *out)
{
    OM_uint32 minor;
    gss_buffer_desc in = {n, (void *)p};
    return !GSS_ERROR(gss_wrap(&minor, cl->ctx, conf, GSS_C_QOP_DEFAULT, &in, NULL, out));
}

static bool
unwrap(struct client *cl, const uint8_t *p, size_t n, gss_buffer_desc *out)
{
    OM_uint32 minor;
    gss_buffer_desc in = {n, (void *)p};
    return gss_unwrap(&minor, cl->ctx, &in, out, NULL, NULL) == GSS_S_COMPLETE;
}

/* Method 0x01 up to the agreed level (which must be the one asked for). */
static bool
gss_auth(int fd, struct client *cl, uint8_t *tok)
{
    if (client_open(cl, service) < 0)
        return false;
    const uint8_t *in = NULL;
    size_t in_len = 0;
    for (;;) {
        gss_buffer_desc out = GSS_C_EMPTY_BUFFER;
        OM_uint32 minor, major = client_step(cl, in, in_len, &out);
        bool sent = !GSS_ERROR(major) &&
                    (out.length == 0 || send_msg(fd, GSSFRAME_MTYP_CTX, out.value, out.length));
        gss_release_buffer(&minor, &out);
        if (!sent)
            return false;
        if (major == GSS_S_COMPLETE) /* mutual: the server's AP-REP was the last token */
            break;
        ssize_t n = read_msg(fd, GSSFRAME_MTYP_CTX, tok);
        if (n <= 0)
            return false;
        in = tok;
        in_len = (size_t)n;
    }
    uint8_t lvl = (uint8_t)level;
    gss_buffer_desc w = GSS_C_EMPTY_BUFFER, u = GSS_C_EMPTY_BUFFER;
    OM_uint32 minor;
    bool ok = wrap(cl, false, &lvl, 1, &w) && send_msg(fd, GSSFRAME_MTYP_LEVEL, w.value, w.length);
    gss_release_buffer(&minor, &w);
    ssize_t n = ok ? read_msg(fd, GSSFRAME_MTYP_LEVEL, tok) : -1;
    ok = n > 0 && unwrap(cl, tok, (size_t)n, &u) && u.length == 1 &&
         ((const uint8_t *)u.value)[0] == lvl;
    gss_release_buffer(&minor, &u);
    return ok;
}

/* At level 1 or 2: one protected message out, and the next one in (payload into p). */
static bool
prot_send(int fd, struct client *cl, const void *p, size_t n)
{
    gss_buffer_desc w = GSS_C_EMPTY_BUFFER;
    OM_uint32 minor;
    bool ok = wrap(cl, level == 2, p, n, &w) && send_msg(fd, GSSFRAME_MTYP_DATA, w.value, w.length);
    gss_release_buffer(&minor, &w);
    return ok;
}

static ssize_t
prot_recv(int fd, struct client *cl, uint8_t *tok, uint8_t *p, size_t cap)
{
    ssize_t n = read_msg(fd, GSSFRAME_MTYP_DATA, tok);
    gss_buffer_desc u = GSS_C_EMPTY_BUFFER;
    OM_uint32 minor;
    if (n <= 0 || !unwrap(cl, tok, (size_t)n, &u) || u.length > cap) {
        gss_release_buffer(&minor, &u);
        return -1;
    }
    memcpy(p, u.value, u.length);
    n = (ssize_t)u.length;
    gss_release_buffer(&minor, &u);
    return n;
}

/* Connect and authenticate; then the CONNECT to the echo, replied. fd back, -1 on failure. */
static int
open_tunnel(struct client *cl, uint8_t *tok)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)proxy_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint8_t b[600];
    bool gss = strcmp(method, "gssapi") == 0, pw = strcmp(method, "password") == 0;
    uint8_t m = gss ? 0x01 : pw ? 0x02 : 0x00;
    uint8_t greet[3] = {5, 1, m};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || !write_n(fd, greet, 3) ||
        !read_n(fd, b, 2) || b[1] != m)
        goto bad;
    if (pw) {
        size_t ul = strlen(user), pl = strlen(pass);
        b[0] = 1;
        b[1] = (uint8_t)ul;
        memcpy(b + 2, user, ul);
        b[2 + ul] = (uint8_t)pl;
        memcpy(b + 3 + ul, pass, pl);
        if (!write_n(fd, b, 3 + ul + pl) || !read_n(fd, b, 2) || b[1] != 0)
            goto bad;
    }
    if (gss && !gss_auth(fd, cl, tok))
        goto bad;
    uint8_t req[10] = {5, 1, 0, 1, 127, 0, 0, 1, (uint8_t)(echo_port >> 8), (uint8_t)echo_port};
    if (gss && level) {
        if (!prot_send(fd, cl, req, sizeof(req)) || prot_recv(fd, cl, tok, b, sizeof(b)) != 10 ||
            b[1] != 0)
            goto bad;
    } else if (!write_n(fd, req, sizeof(req)) || !read_n(fd, b, 10) || b[1] != 0) {
        goto bad;
    }
    return fd;
bad:
    if (fd >= 0)
        close(fd);
    return -1;
}

static void *
hs_thread(void *arg)
{
    (void)arg;
    uint8_t *tok = malloc(GSSFRAME_TOKEN_MAX);
    bool gss = strcmp(method, "gssapi") == 0;
    while (tok && atomic_fetch_sub(&left, 1) > 0 && !atomic_load(&failed)) {
        struct client cl = {GSS_C_NO_NAME, GSS_C_NO_CONTEXT};
        int fd = open_tunnel(&cl, tok);
        uint8_t x = 'x', y[64];
        bool ok = fd >= 0;
        if (ok && gss && level)
            ok = prot_send(fd, &cl, &x, 1) && prot_recv(fd, &cl, tok, y, sizeof(y)) == 1 &&
                 y[0] == x;
        else if (ok)
            ok = write_n(fd, &x, 1) && read_n(fd, y, 1) && y[0] == x;
        if (!ok)
            fail("a handshake or its byte failed");
        if (fd >= 0)
            close(fd);
        if (gss)
            client_close(&cl);
    }
    free(tok);
    return NULL;
}

/* One tunnel, both ways at once: poll, write the next message when writable, read when
 * readable (one thread: a GSS-API context is used by one thread at a time). */
static int
bulk(long total)
{
    struct client cl = {GSS_C_NO_NAME, GSS_C_NO_CONTEXT};
    uint8_t *tok = malloc(GSSFRAME_TOKEN_MAX), *in = malloc(2 * GSSFRAME_TOKEN_MAX);
    uint8_t *plain = malloc(CHUNK), *out = malloc(GSSFRAME_HDR_LEN + GSSFRAME_TOKEN_MAX);
    method = "gssapi";
    int fd = tok && in && plain && out ? open_tunnel(&cl, tok) : -1;
    if (fd < 0) {
        fail("the tunnel could not be opened");
        return 1;
    }
    for (size_t i = 0; i < CHUNK; i++)
        plain[i] = (uint8_t)(i * 131 + 7);
    long sent = 0, got = 0;
    size_t out_len = 0, out_off = 0, in_len = 0;
    uint64_t sum_out = 0, sum_in = 0;
    double t0 = now_s();
    while (got < total) {
        if (out_off == out_len && sent < total) {
            size_t n = total - sent < CHUNK ? (size_t)(total - sent) : CHUNK;
            for (size_t i = 0; i < n; i++)
                sum_out += plain[i];
            if (level) {
                gss_buffer_desc w = GSS_C_EMPTY_BUFFER;
                OM_uint32 minor;
                if (!wrap(&cl, level == 2, plain, n, &w)) {
                    fail("gss_wrap");
                    break;
                }
                gssframe_header(out, GSSFRAME_MTYP_DATA, w.length);
                memcpy(out + GSSFRAME_HDR_LEN, w.value, w.length);
                out_len = GSSFRAME_HDR_LEN + w.length;
                gss_release_buffer(&minor, &w);
            } else {
                memcpy(out, plain, n);
                out_len = n;
            }
            out_off = 0;
            sent += (long)n;
        }
        struct pollfd p = {fd, POLLIN | (out_off < out_len ? POLLOUT : 0), 0};
        if (poll(&p, 1, 10000) <= 0) {
            fail("the tunnel stalled for 10 s");
            break;
        }
        if ((p.revents & POLLOUT) && out_off < out_len) {
            ssize_t w = send(fd, out + out_off, out_len - out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                out_off += (size_t)w;
            else if (w < 0 && errno != EAGAIN) {
                fail("send");
                break;
            }
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, in + in_len, 2 * GSSFRAME_TOKEN_MAX - in_len, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                fail("the tunnel ended early");
                break;
            }
            if (r > 0)
                in_len += (size_t)r;
            size_t off = 0;
            while (off < in_len) {
                if (!level) {
                    for (size_t i = off; i < in_len; i++)
                        sum_in += in[i];
                    got += (long)(in_len - off);
                    off = in_len;
                    break;
                }
                struct gssframe f;
                ssize_t c = gssframe_feed(&f, in + off, in_len - off, GSSFRAME_EXPECT_DATA,
                                          GSSFRAME_DATA_TOKEN_MAX);
                if (c == 0)
                    break;
                gss_buffer_desc u = GSS_C_EMPTY_BUFFER;
                OM_uint32 minor;
                if (c < 0 || !unwrap(&cl, in + off + GSSFRAME_HDR_LEN, f.len, &u)) {
                    fail("a bad frame from the proxy");
                    got = total;
                    break;
                }
                for (size_t i = 0; i < u.length; i++)
                    sum_in += ((const uint8_t *)u.value)[i];
                got += (long)u.length;
                gss_release_buffer(&minor, &u);
                off += (size_t)c;
            }
            memmove(in, in + off, in_len - off);
            in_len -= off;
        }
    }
    double secs = now_s() - t0;
    if (!atomic_load(&failed) && sum_in != sum_out)
        fail("the bytes that came back differ");
    close(fd);
    client_close(&cl);
    if (atomic_load(&failed))
        return 1;
    printf("bytes=%ld seconds=%.3f mbps=%.1f\n", total, secs, (double)total * 8 / secs / 1e6);
    return 0;
}

int
main(int argc, char **argv)
{
    long count = 1000, bytes = 64L << 20;
    int threads = 1;
    if (argc < 2)
        goto usage;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port"))
            proxy_port = atoi(v);
        else if (!strcmp(k, "--method"))
            method = v;
        else if (!strcmp(k, "--service"))
            service = v;
        else if (!strcmp(k, "--user"))
            user = v;
        else if (!strcmp(k, "--pass"))
            pass = v;
        else if (!strcmp(k, "--count"))
            count = atol(v);
        else if (!strcmp(k, "--threads"))
            threads = atoi(v);
        else if (!strcmp(k, "--level"))
            level = atoi(v);
        else if (!strcmp(k, "--bytes"))
            bytes = atol(v);
        else
            goto usage;
    }
    if (!proxy_port || level < 0 || level > 2 || threads < 1 || threads > 64 ||
        strlen(user) > 255 || strlen(pass) > 255)
        goto usage;
    if (echo_start() < 0) {
        perror("gss-load: echo target");
        return 1;
    }
    if (!strcmp(argv[1], "bulk"))
        return bulk(bytes);
    if (strcmp(argv[1], "hs") != 0)
        goto usage;
    atomic_store(&left, count);
    pthread_t t[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, hs_thread, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    double secs = now_s() - t0;
    if (atomic_load(&failed))
        return 1;
    printf("handshakes=%ld seconds=%.3f rate=%.1f\n", count, secs, (double)count / secs);
    return 0;
usage:
    fprintf(stderr, "usage: gss-load hs|bulk --port P [--method gssapi|password|none] "
                    "[--service S] [--user U --pass W] [--count N] [--threads T] [--level L] "
                    "[--bytes B]\n");
    return 2;
}
