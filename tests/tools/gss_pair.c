/*
 * gss_pair.c - the GSS-API acceptor (src/gssacc.c) against a real initiator, for
 * tests/integration/cases_krb.py. Both sides run in this one process: the client side is
 * MIT's gss_init_sec_context on the credential cache KRB5CCNAME names, the server side is
 * gssacc_* on the keytab given; the test's realm (tests/integration/krb.py) provides
 * KRB5_CONFIG and the KDC.
 *
 *   gss-pair pair   --service S --target T [--keytab K]
 *       establish a context, print the client's name and what it can protect, then check
 *       wrap/unwrap both ways, and that a damaged and a replayed message are refused
 *   gss-pair token  --target T          the client's first token, hex, on stdout
 *   gss-pair accept --service S [--keytab K]   that token (hex, stdin) to the acceptor
 *   gss-pair serve  --service S [--keytab K] --port P [--level L]
 *       one SOCKS5 client on 127.0.0.1:P through method 0x01 (RFC 1961 sections 3 and 4;
 *       the choice 05 01 is sent at once, before the greeting: see serve_one()),
 *       answering its protection level with L (default: what it asked for), reporting
 *       what it sent; then the client's SOCKS request, refused (general failure)
 *   gss-pair client --target T --port P [--level L] [--nec 1]
 *       a SOCKS5 client through method 0x01 to 127.0.0.1:P: the context (mutual), the
 *       protection level L (default 0) wrapped (or bare with --nec), what the server
 *       granted, then a CONNECT to 127.0.0.1:9 in the clear and the server's reply code
 *
 * S is the acceptor's service ("rcmd/localhost", "rcmd@localhost", "" for any key in the
 * keytab), T the service the client asks a ticket for (same forms).
 * Exit: 0 accepted (and every check passed), 1 the acceptor refused ("refused: WHY" on
 * stdout), 3 the client side failed ("initiator: WHY"), 2 a check or usage failed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_krb5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gss_client.h"
#include "gssacc.h"
#include "gssframe.h"

#define EXIT_REFUSED   1
#define EXIT_BROKEN    2
#define EXIT_INITIATOR 3

/* Microseconds per gssacc_wrap and gssacc_unwrap of a 16 KiB message (the question:
 * may per-message protection run on a shard?). The client unwraps the server's tokens and wraps
 * the ones the server unwraps, in order, outside the timing. */
static int
measure(struct client *cl, struct gssacc_ctx *srv, bool conf)
{
    enum { ROUNDS = 2000, SIZE = 16384 };
    static uint8_t msg[SIZE], tok[GSSACC_TOKEN_MAX], back[GSSACC_TOKEN_MAX];
    struct timespec a;
    double wrap_ns = 0, unwrap_ns = 0;
    for (int i = 0; i < ROUNDS; i++) {
        clock_gettime(CLOCK_MONOTONIC, &a);
        ssize_t n = gssacc_wrap(srv, conf, msg, SIZE, tok, sizeof(tok));
        wrap_ns += ns_since(&a);
        if (n < 0)
            return check(0, "server gssacc_wrap (measure)");
        gss_buffer_desc t = {(size_t)n, tok}, in = {SIZE, msg}, out = GSS_C_EMPTY_BUFFER;
        OM_uint32 minor;
        int st;
        if (gss_unwrap(&minor, cl->ctx, &t, &out, &st, NULL) != GSS_S_COMPLETE)
            return check(0, "client gss_unwrap (measure)");
        gss_release_buffer(&minor, &out);
        if (GSS_ERROR(gss_wrap(&minor, cl->ctx, conf, GSS_C_QOP_DEFAULT, &in, &st, &out)))
            return check(0, "client gss_wrap (measure)");
        bool was_conf;
        clock_gettime(CLOCK_MONOTONIC, &a);
        n = gssacc_unwrap(srv, out.value, out.length, back, sizeof(back), &was_conf);
        unwrap_ns += ns_since(&a);
        gss_release_buffer(&minor, &out);
        if (n != SIZE || was_conf != conf)
            return check(0, "server gssacc_unwrap (measure)");
    }
    printf("16 KiB %s: wrap %.1f us, unwrap %.1f us\n", conf ? "confidentiality" : "integrity",
           wrap_ns / ROUNDS / 1e3, unwrap_ns / ROUNDS / 1e3);
    return 0;
}

/* Client wraps, server unwraps; server wraps, client unwraps; damage and replay refused. */
static int
protection(struct client *cl, struct gssacc_ctx *srv)
{
    static uint8_t buf[GSSACC_TOKEN_MAX];
    const char msg[] = "GET / HTTP/1.0 from the client";
    gss_buffer_desc in = {sizeof(msg), (void *)msg}, tok = GSS_C_EMPTY_BUFFER;
    OM_uint32 minor;
    int conf = 0, bad = 0;
    /* First: after the damaged message below the client's sequence has a gap, which the
     * server refuses (GSS_S_GAP_TOKEN) like any other out-of-order message. */
    bad |= measure(cl, srv, false);
    bad |= measure(cl, srv, true);
    if (GSS_ERROR(gss_wrap(&minor, cl->ctx, 1, GSS_C_QOP_DEFAULT, &in, &conf, &tok)))
        return check(0, "client gss_wrap");
    bool was_conf;
    ssize_t n = gssacc_unwrap(srv, tok.value, tok.length, buf, sizeof(buf), &was_conf);
    bad |= check(n == (ssize_t)sizeof(msg) && memcmp(buf, msg, sizeof(msg)) == 0 && was_conf,
                 "server unwraps the client's encrypted message");
    n = gssacc_unwrap(srv, tok.value, tok.length, buf, sizeof(buf), &was_conf);
    bad |= check(n == -EACCES, "server refuses the same message replayed");
    gss_release_buffer(&minor, &tok);

    in.value = (void *)"second";
    in.length = 6;
    if (GSS_ERROR(gss_wrap(&minor, cl->ctx, 0, GSS_C_QOP_DEFAULT, &in, &conf, &tok)))
        return check(0, "client gss_wrap");
    ((uint8_t *)tok.value)[tok.length - 1] ^= 0x40;
    n = gssacc_unwrap(srv, tok.value, tok.length, buf, sizeof(buf), &was_conf);
    bad |= check(n == -EACCES, "server refuses a damaged message");
    gss_release_buffer(&minor, &tok);

    const char reply[] = "HTTP/1.0 200 OK from the server";
    n = gssacc_wrap(srv, false, (const uint8_t *)reply, sizeof(reply), buf, sizeof(buf));
    if (n < 0)
        return check(0, "server gssacc_wrap");
    gss_buffer_desc t2 = {(size_t)n, buf}, out = GSS_C_EMPTY_BUFFER;
    OM_uint32 major = gss_unwrap(&minor, cl->ctx, &t2, &out, &conf, NULL);
    bad |= check(major == GSS_S_COMPLETE && out.length == sizeof(reply) &&
                     memcmp(out.value, reply, sizeof(reply)) == 0 && !conf,
                 "client unwraps the server's integrity-only message");
    gss_release_buffer(&minor, &out);
    n = gssacc_wrap(srv, true, (const uint8_t *)reply, sizeof(reply), buf, 8);
    bad |= check(n == -EMSGSIZE, "a token longer than the caller's buffer is -EMSGSIZE");
    ssize_t lim = gssacc_wrap_limit(srv, true, GSSACC_TOKEN_MAX);
    printf("wrap_limit conf %zd\n", lim);
    bad |= check(lim > 60000 && lim < GSSACC_TOKEN_MAX, "wrap limit below the token maximum");

    return bad ? -1 : 0;
}

/* The acceptor's credential, or "refused: cred: WHY" on stdout and NULL. */
static struct gssacc_cred *
open_cred(const char *service, const char *keytab)
{
    char err[GSSACC_ERR_MAX];
    struct gssacc_cred *cred;
    int rc = gssacc_cred_open(&cred, service, keytab, err, sizeof(err));
    if (rc < 0)
        printf("refused: cred: %s (%d)\n", err, rc);
    return cred;
}

static int
pair(const char *service, const char *target, const char *keytab)
{
    static uint8_t out[GSSACC_TOKEN_MAX];
    char err[GSSACC_ERR_MAX];
    struct gssacc_cred *cred = open_cred(service, keytab);
    if (cred == NULL)
        return EXIT_REFUSED;
    int rc;
    struct client cl;
    if (client_open(&cl, target) < 0) {
        gssacc_cred_free(cred);
        return EXIT_INITIATOR;
    }
    struct gssacc_ctx *srv;
    if (gssacc_new(&srv, cred) < 0)
        return EXIT_BROKEN;
    int ret = EXIT_BROKEN, done = 0;
    size_t back_len = 0;
    for (int round = 0; round < 10; round++) {
        gss_buffer_desc tok = GSS_C_EMPTY_BUFFER;
        OM_uint32 minor, major = client_step(&cl, out, back_len, &tok);
        if (GSS_ERROR(major)) {
            ret = EXIT_INITIATOR;
            goto out;
        }
        if (!(major & GSS_S_CONTINUE_NEEDED) && done) {
            gss_release_buffer(&minor, &tok);
            break;
        }
        rc = gssacc_accept(srv, tok.value, tok.length, out, sizeof(out), &back_len, err,
                           sizeof(err));
        gss_release_buffer(&minor, &tok);
        printf("accept round %d: %d, reply token %zu bytes\n", round, rc, back_len);
        if (rc < 0) {
            printf("refused: %s (%d)\n", err, rc);
            ret = EXIT_REFUSED;
            goto out;
        }
        done = rc == 1;
        if (done && back_len == 0)
            break;
    }
    char name[256], shortname[256];
    if (gssacc_client_name(srv, false, name, sizeof(name)) < 0 ||
        gssacc_client_name(srv, true, shortname, sizeof(shortname)) < 0) {
        printf("FAILED no client name\n");
        goto out;
    }
    printf("accepted name=%s short=%s integ=%d conf=%d\n", name, shortname, gssacc_can_integ(srv),
           gssacc_can_conf(srv));
    ret = check(gssacc_client_name(srv, false, name, 4) == -EMSGSIZE,
                "a name longer than the buffer is -EMSGSIZE") == 0 &&
                  protection(&cl, srv) == 0
              ? 0
              : EXIT_BROKEN;
out:
    gssacc_free(srv);
    client_close(&cl);
    gssacc_cred_free(cred);
    return ret;
}

static int
token(const char *target)
{
    struct client cl;
    if (client_open(&cl, target) < 0)
        return EXIT_INITIATOR;
    gss_buffer_desc tok = GSS_C_EMPTY_BUFFER;
    OM_uint32 minor, major = client_step(&cl, NULL, 0, &tok);
    int ret = EXIT_INITIATOR;
    if (!GSS_ERROR(major)) {
        for (size_t i = 0; i < tok.length; i++)
            printf("%02x", ((const uint8_t *)tok.value)[i]);
        printf("\n");
        ret = 0;
    }
    gss_release_buffer(&minor, &tok);
    client_close(&cl);
    return ret;
}

static int
accept_hex(const char *service, const char *keytab)
{
    static uint8_t in[GSSACC_TOKEN_MAX], out[GSSACC_TOKEN_MAX];
    size_t n = 0;
    unsigned byte;
    while (n < sizeof(in) && scanf("%2x", &byte) == 1)
        in[n++] = (uint8_t)byte;
    char err[GSSACC_ERR_MAX];
    struct gssacc_cred *cred = open_cred(service, keytab);
    if (cred == NULL)
        return EXIT_REFUSED;
    int rc;
    struct gssacc_ctx *srv;
    if (gssacc_new(&srv, cred) < 0)
        return EXIT_BROKEN;
    size_t back_len;
    rc = gssacc_accept(srv, in, n, out, sizeof(out), &back_len, err, sizeof(err));
    int ret = 0;
    if (rc < 0) {
        printf("refused: %s (%d)\n", err, rc);
        ret = EXIT_REFUSED;
    } else {
        char name[256];
        gssacc_client_name(srv, false, name, sizeof(name));
        printf("accepted name=%s (%d)\n", rc == 1 ? name : "?", rc);
    }
    gssacc_free(srv);
    gssacc_cred_free(cred);
    return ret;
}

static int
read_all(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/*
 * One RFC 1961 message: ver 1, mtyp, 16-bit length, token; the abort is ver and mtyp
 * alone (section 3.8). Returns the token's length (0 for an abort) or -1.
 */
static int
read_msg(int fd, uint8_t *mtyp, uint8_t *tok)
{
    uint8_t h[GSSFRAME_HDR_LEN];
    if (read_all(fd, h, GSSFRAME_ABORT_LEN) < 0)
        return -1;
    *mtyp = h[1];
    if (h[1] == GSSFRAME_MTYP_ABORT) {
        printf("message ver %u abort\n", h[0]);
        return 0;
    }
    if (read_all(fd, h + GSSFRAME_ABORT_LEN, GSSFRAME_HDR_LEN - GSSFRAME_ABORT_LEN) < 0)
        return -1;
    size_t len = (size_t)h[2] << 8 | h[3];
    printf("client message ver %u mtyp %u len %zu\n", h[0], h[1], len);
    return read_all(fd, tok, len) < 0 ? -1 : (int)len;
}

/* A message with its header (gssframe.h), or the abort for mtyp 0xff. */
static void
send_msg(int fd, uint8_t mtyp, const uint8_t *tok, size_t len)
{
    uint8_t h[GSSFRAME_HDR_LEN];
    if (mtyp == GSSFRAME_MTYP_ABORT) {
        if (write(fd, h, gssframe_abort(h)) != GSSFRAME_ABORT_LEN)
            printf("write failed\n");
        return;
    }
    size_t n = gssframe_header(h, mtyp, len);
    if (n == 0 || write(fd, h, n) != (ssize_t)n || write(fd, tok, len) != (ssize_t)len)
        printf("write failed\n");
}

static int
serve_one(int fd, struct gssacc_ctx *srv, int level)
{
    static uint8_t in[GSSACC_TOKEN_MAX], out[GSSACC_TOKEN_MAX];
    char err[GSSACC_ERR_MAX];
    uint8_t g[2], mtyp;
    /* The method choice goes out before the greeting is read: curl <= 8.16 must find it at
     * its first read after sending the greeting, or it forgets it offered GSS-API. */
    if (write(fd, "\x05\x01", 2) != 2)
        return EXIT_BROKEN;
    if (read_all(fd, g, 2) < 0 || read_all(fd, in, g[1]) < 0)
        return EXIT_BROKEN;
    printf("greeting ver %u methods", g[0]);
    for (int i = 0; i < g[1]; i++)
        printf(" %02x", in[i]);
    printf("\n");
    int rc = 0;
    while (rc == 0) {
        int len = read_msg(fd, &mtyp, in);
        if (len < 0)
            return EXIT_BROKEN;
        size_t back;
        rc = gssacc_accept(srv, in, (size_t)len, out, sizeof(out), &back, err, sizeof(err));
        if (rc < 0) {
            printf("refused: %s\n", err);
            send_msg(fd, GSSFRAME_MTYP_ABORT, out, 0);
            return EXIT_REFUSED;
        }
        if (back > 0)
            send_msg(fd, 1, out, back);
    }
    char name[256];
    gssacc_client_name(srv, false, name, sizeof(name));
    printf("accepted name=%s integ=%d conf=%d\n", name, gssacc_can_integ(srv),
           gssacc_can_conf(srv));
    int len = read_msg(fd, &mtyp, in);
    if (len < 0 || mtyp != 2)
        return EXIT_BROKEN;
    bool nec = len == 1, was_conf = false;
    uint8_t asked = in[0];
    if (!nec) {
        ssize_t n = gssacc_unwrap(srv, in, (size_t)len, out, sizeof(out), &was_conf);
        if (n != 1) {
            printf("protection level token does not unwrap to one byte (%zd)\n", n);
            return EXIT_BROKEN;
        }
        asked = out[0];
    }
    printf("protection level asked %u, %s%s\n", asked, nec ? "unwrapped (NEC)" : "wrapped",
           was_conf ? " encrypted" : "");
    uint8_t answer = level >= 0 ? (uint8_t)level : asked;
    if (nec) {
        send_msg(fd, 2, &answer, 1);
    } else {
        ssize_t n = gssacc_wrap(srv, false, &answer, 1, out, sizeof(out));
        if (n < 0)
            return EXIT_BROKEN;
        send_msg(fd, 2, out, (size_t)n);
    }
    ssize_t n = read(fd, in, sizeof(in));
    printf("then %zd bytes:", n);
    for (ssize_t i = 0; i < n && i < 48; i++)
        printf(" %02x", in[i]);
    printf("\n");
    if (write(fd, "\x05\x01\x00\x01\0\0\0\0\0\0", 10) != 10)
        printf("write failed\n");
    return 0;
}

/* The RFC 1961 client (a SOCKS5 client of ours, since Debian's curl cannot finish one). */
static int
client_socks(struct client *cl, int fd, int level, bool nec)
{
    static uint8_t in[GSSACC_TOKEN_MAX];
    uint8_t m[2], mtyp;
    if (write(fd, "\x05\x01\x01", 3) != 3 || read_all(fd, m, 2) < 0)
        return EXIT_BROKEN;
    printf("method %02x\n", m[1]);
    if (m[0] != 5 || m[1] != 1)
        return EXIT_REFUSED;
    size_t in_len = 0;
    for (int round = 0; round < 10; round++) {
        gss_buffer_desc tok = GSS_C_EMPTY_BUFFER;
        OM_uint32 minor, major = client_step(cl, in, in_len, &tok);
        if (GSS_ERROR(major))
            return EXIT_INITIATOR;
        if (tok.length)
            send_msg(fd, 1, tok.value, tok.length);
        gss_release_buffer(&minor, &tok);
        if (!(major & GSS_S_CONTINUE_NEEDED))
            break;
        int len = read_msg(fd, &mtyp, in);
        if (len < 0 || mtyp == GSSFRAME_MTYP_ABORT) {
            printf("refused by the server (mtyp %u)\n", len < 0 ? 0 : mtyp);
            return EXIT_REFUSED;
        }
        in_len = (size_t)len;
    }
    printf("context established\n");
    uint8_t ask = (uint8_t)level;
    OM_uint32 minor;
    int conf = 0;
    if (nec) {
        send_msg(fd, 2, &ask, 1);
    } else {
        gss_buffer_desc b = {1, &ask}, t = GSS_C_EMPTY_BUFFER;
        if (GSS_ERROR(gss_wrap(&minor, cl->ctx, 0, GSS_C_QOP_DEFAULT, &b, &conf, &t)))
            return EXIT_INITIATOR;
        send_msg(fd, 2, t.value, t.length);
        gss_release_buffer(&minor, &t);
    }
    int len = read_msg(fd, &mtyp, in);
    if (len < 1 || mtyp != 2)
        return EXIT_BROKEN;
    uint8_t granted = in[0];
    if (len > 1) {
        gss_buffer_desc t = {(size_t)len, in}, out = GSS_C_EMPTY_BUFFER;
        if (gss_unwrap(&minor, cl->ctx, &t, &out, &conf, NULL) != GSS_S_COMPLETE ||
            out.length != 1) {
            printf("the granted level does not unwrap to one byte\n");
            gss_release_buffer(&minor, &out);
            return EXIT_BROKEN;
        }
        granted = ((const uint8_t *)out.value)[0];
        gss_release_buffer(&minor, &out);
    }
    printf("granted %u%s\n", granted, len == 1 ? " (bare)" : "");
    static const uint8_t req[] = {5, 1, 0, 1, 127, 0, 0, 1, 0, 9};
    uint8_t rep[10];
    if (write(fd, req, sizeof(req)) != (ssize_t)sizeof(req) || read_all(fd, rep, sizeof(rep)) < 0)
        return EXIT_BROKEN;
    printf("reply rep %u\n", rep[1]);
    return 0;
}

static int
client_connect(const char *target, const char *port, const char *level, bool nec)
{
    struct client cl;
    if (client_open(&cl, target) < 0)
        return EXIT_INITIATOR;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ret = EXIT_BROKEN;
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        ret = client_socks(&cl, fd, level ? atoi(level) : 0, nec);
    else
        perror("connect");
    if (fd >= 0)
        close(fd);
    client_close(&cl);
    return ret;
}

static int
serve(const char *service, const char *keytab, const char *port, const char *level)
{
    struct gssacc_cred *cred = open_cred(service, keytab);
    if (cred == NULL)
        return EXIT_REFUSED;
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) == -1 || listen(ls, 1) == -1) {
        perror("bind");
        return EXIT_BROKEN;
    }
    printf("listening\n");
    int fd = accept(ls, NULL, NULL);
    close(ls);
    if (fd == -1)
        return EXIT_BROKEN;
    struct gssacc_ctx *srv;
    int ret = EXIT_BROKEN;
    if (gssacc_new(&srv, cred) == 0) {
        ret = serve_one(fd, srv, level ? atoi(level) : -1);
        gssacc_free(srv);
    }
    close(fd);
    gssacc_cred_free(cred);
    return ret;
}

int
main(int argc, char **argv)
{
    const char *service = NULL, *target = NULL, *keytab = NULL, *port = NULL, *level = NULL;
    bool nec = false;
    if (argc < 2)
        goto usage;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--service") == 0)
            service = argv[i + 1];
        else if (strcmp(argv[i], "--target") == 0)
            target = argv[i + 1];
        else if (strcmp(argv[i], "--keytab") == 0)
            keytab = argv[i + 1];
        else if (strcmp(argv[i], "--port") == 0)
            port = argv[i + 1];
        else if (strcmp(argv[i], "--level") == 0)
            level = argv[i + 1];
        else if (strcmp(argv[i], "--nec") == 0)
            nec = strcmp(argv[i + 1], "0") != 0;
        else
            goto usage;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "pair") == 0 && target != NULL)
        return pair(service, target, keytab);
    if (strcmp(argv[1], "token") == 0 && target != NULL)
        return token(target);
    if (strcmp(argv[1], "accept") == 0)
        return accept_hex(service, keytab);
    if (strcmp(argv[1], "serve") == 0 && port != NULL)
        return serve(service, keytab, port, level);
    if (strcmp(argv[1], "client") == 0 && target != NULL && port != NULL)
        return client_connect(target, port, level, nec);
usage:
    fprintf(stderr, "usage: gss-pair pair|token|accept|serve|client [--service S] [--target T] "
                    "[--keytab K] [--port P] [--level L] [--nec 1]\n");
    return EXIT_BROKEN;
}
