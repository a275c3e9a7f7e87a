/*
 * admin.c - the admin HTTP endpoint: GET /metrics, GET /healthz,
 * POST /reload, POST /drain, one request per connection.
 *
 * Control thread only. It owns the listening socket, up to
 * ADMIN_MAX_CLIENTS connections, and one spare fd. It must never wait on a
 * socket: every socket is non-blocking, the control thread's poll() is the
 * only wait, and each connection has a deadline for its request head and
 * one for its answer. A connection beyond the cap evicts the oldest client
 * still sending its head, so slow clients cannot make a new request wait.
 * Out of fds, the spare is given up to accept and serve one more client.
 * It never touches shard state: the handlers do that. With a Unix socket it
 * also owns the socket file, removed at close. The bearer token is kept as
 * its digest only, and never written into a log line or an answer.
 */
#include "admin.h"
#include "hostname.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_HEAD_MAX     8192 /* request line and headers, with the final CRLFCRLF */
#define ADMIN_BACKLOG      64
#define ADMIN_ACCEPT_BATCH 64    /* per admin_poll_done(), so the loop's other fds wait no longer */
#define ADMIN_FD_RETRY_MS  250   /* out of fds, no spare, no client to evict: retry after this */
#define ADMIN_LINGER_STEP  65536 /* bytes drained from a client after its answer, per turn */
#define ADMIN_HOSTS_MAX    1024  /* admin_hosts, as opts.h holds it */
#define ADMIN_MSG_MAX      4096  /* handler messages (reload report or errors, health reason) */

enum admin_state {
    AC_FREE = 0,
    AC_READ,   /* reading the request head */
    AC_WRITE,  /* writing the response */
    AC_LINGER, /* response sent, our side shut: draining the client until its EOF */
};

struct admin_client {
    int fd;
    enum admin_state state;
    uint64_t seq;        /* accept order: the oldest is evicted first */
    int64_t deadline_ms; /* CLOCK_MONOTONIC */
    size_t in_len;
    size_t head_len, sent; /* response: head[] then body, sent bytes so far */
    const char *body;
    size_t body_len;
    char *body_owned; /* malloc'ed body (metrics), freed at close */
    char head[384];
    char msg[ADMIN_MSG_MAX + 2]; /* handler message plus "\n" */
    char in[ADMIN_HEAD_MAX];
};

struct admin {
    int fd;
    int spare_fd;             /* /dev/null; -1 while given up for a client (or lost) */
    int64_t accept_resume_ms; /* out of fds: the listener is not polled before this */
    uint64_t seq;
    unsigned n_polled;                  /* what admin_poll_prepare() wrote: the listener, then... */
    unsigned polled[ADMIN_MAX_CLIENTS]; /* ...these clients */
    char hosts[ADMIN_HOSTS_MAX];
    bool has_token;
    unsigned char token[ADMIN_TOKEN_DIGEST];
    char *unix_path; /* the socket file made by admin_open_unix(), removed at close */
    dev_t unix_dev;  /* ...while it is still that file */
    ino_t unix_ino;
    struct admin_client c[ADMIN_MAX_CLIENTS];
};

/* ---- request parsing (pure) */

/* RFC 9110 section 5.6.2 token characters. */
static bool
is_tchar(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return true;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/*
 * Check a request line, RFC 9112 section 3: method SP origin-form SP
 * HTTP/1.x. p[0..n) is the whole line without CRLF when complete, else what
 * has arrived so far; a prefix that can still become valid gives 0. Returns
 * 1 complete and valid (lengths in *mlen, *tlen), 0 fine so far, -1 invalid.
 */
static int
check_request_line(const char *p, size_t n, bool complete, size_t *mlen, size_t *tlen)
{
    static const char version[] = "HTTP/1.";
    size_t i = 0, m, t0;

    if (!complete && n && p[n - 1] == '\r')
        n--; /* the CR of a CRLF still on its way */
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == n)
        return complete ? -1 : 0;
    if (p[i] != ' ' || i == 0)
        return -1;
    m = i++;
    /* origin-form only: absolute-form and "*" have no use here. */
    t0 = i;
    if (i == n)
        return complete ? -1 : 0;
    if (p[i] != '/')
        return -1;
    while (i < n && (unsigned char)p[i] > ' ' && (unsigned char)p[i] < 0x7F)
        i++;
    if (i == n)
        return complete ? -1 : 0;
    if (p[i] != ' ')
        return -1;
    *tlen = i - t0;
    i++;
    for (size_t k = 0; k < sizeof(version) - 1; k++, i++) {
        if (i == n)
            return complete ? -1 : 0;
        if (p[i] != version[k])
            return -1;
    }
    if (i == n)
        return complete ? -1 : 0;
    if (p[i] < '0' || p[i] > '9' || i + 1 != n)
        return -1;
    *mlen = m;
    return complete ? 1 : 0;
}

/*
 * RFC 9112 section 5: field-name ":" OWS field-value OWS. No space before
 * the colon (5.1: must be rejected), no obs-fold (5.2: may be rejected), no
 * control characters but HTAB in the value. Returns the name's length, or 0
 * when the line is invalid.
 */
static size_t
check_header_line(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i == n || p[i] != ':')
        return 0;
    for (size_t k = i + 1; k < n; k++) {
        unsigned char ch = (unsigned char)p[k];
        if ((ch < ' ' && ch != '\t') || ch == 0x7F)
            return 0;
    }
    return i;
}

static bool
is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* p[0..*n) without leading and trailing OWS. */
static const char *
trim_ows(const char *p, size_t *n)
{
    while (*n && is_ows(p[0])) {
        p++;
        (*n)--;
    }
    while (*n && is_ows(p[*n - 1]))
        (*n)--;
    return p;
}

static bool
equal_nocase(const char *a, size_t alen, const char *b)
{
    return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

/* Remember the value of a field the checks need (field names are case-insensitive, 9110 5.1). */
static void
note_field(struct admin_request *rq, const char *line, size_t n, size_t name_len)
{
    static const struct {
        const char *name;
        size_t off;
    } wanted[] = {
        {"host", offsetof(struct admin_request, host)},
        {"origin", offsetof(struct admin_request, origin)},
        {"content-type", offsetof(struct admin_request, content_type)},
        {"sec-fetch-site", offsetof(struct admin_request, fetch_site)},
        {"authorization", offsetof(struct admin_request, authorization)},
    };
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
        if (!equal_nocase(line, name_len, wanted[i].name))
            continue;
        struct admin_field *f = (struct admin_field *)((char *)rq + wanted[i].off);
        if (f->n++ == 0) {
            f->len = n - name_len - 1;
            f->v = trim_ows(line + name_len + 1, &f->len);
        }
        return;
    }
}

int
admin_parse_request(const char *buf, size_t len, struct admin_request *rq)
{
    size_t scan = len < ADMIN_HEAD_MAX ? len : ADMIN_HEAD_MAX;
    const char *end = memmem(buf, scan, "\r\n\r\n", 4);
    const char *eol = memmem(buf, scan, "\r\n", 2);
    size_t mlen = 0, tlen = 0;

    if (!end) {
        if (len >= ADMIN_HEAD_MAX)
            return -1;
        /* Refuse garbage (a TLS hello, a stray protocol) at once, not at the deadline. */
        if (eol)
            return check_request_line(buf, (size_t)(eol - buf), true, &mlen, &tlen) < 0 ? -1 : 0;
        return check_request_line(buf, len, false, &mlen, &tlen) < 0 ? -1 : 0;
    }
    if (check_request_line(buf, (size_t)(eol - buf), true, &mlen, &tlen) != 1)
        return -1;
    memset(rq, 0, sizeof(*rq));
    for (const char *p = eol + 2; p < end + 2;) {
        const char *e = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
        size_t name_len = check_header_line(p, (size_t)(e - p));
        if (name_len == 0)
            return -1;
        note_field(rq, p, (size_t)(e - p), name_len);
        p = e + 2;
    }

    const char *target = buf + mlen + 1;
    size_t plen = strcspn(target, "?# ");
    if (plen > tlen)
        plen = tlen;
    size_t qlen = 0;
    if (plen < tlen && target[plen] == '?') {
        qlen = strcspn(target + plen + 1, "# ");
        if (plen + 1 + qlen > tlen)
            qlen = tlen - plen - 1;
    }
    if (mlen >= sizeof(rq->method) || plen >= sizeof(rq->path) || qlen >= sizeof(rq->query))
        return -1;
    memcpy(rq->method, buf, mlen);
    rq->method[mlen] = '\0';
    memcpy(rq->path, target, plen);
    rq->path[plen] = '\0';
    memcpy(rq->query, target + plen + (qlen ? 1 : 0), qlen);
    rq->query[qlen] = '\0';
    return (int)(end + 4 - buf);
}

/* ---- what a browser could send (pure) */

/* "host" or "host:port" (port 1..5 digits, at most 65535; absent: 80) -> host part and port. */
static bool
split_host_port(const char *v, size_t len, size_t *hlen, unsigned *port)
{
    size_t h;
    if (len && v[0] == '[') {
        const char *rb = memchr(v, ']', len);
        if (!rb)
            return false;
        h = (size_t)(rb - v) + 1;
    } else {
        const char *colon = memchr(v, ':', len);
        h = colon ? (size_t)(colon - v) : len;
    }
    if (h == 0)
        return false;
    *hlen = h;
    *port = 80;
    if (h == len)
        return true;
    if (v[h] != ':' || len - h - 1 < 1 || len - h - 1 > 5)
        return false;
    unsigned p = 0;
    for (size_t i = h + 1; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        p = p * 10 + (unsigned)(v[i] - '0');
    }
    if (p > 65535)
        return false;
    *port = p;
    return true;
}

/* inet_pton() on v[0..len), which is not NUL-terminated. */
static bool
is_ip_literal(int af, const char *v, size_t len)
{
    char text[INET6_ADDRSTRLEN];
    struct in6_addr a;
    if (len >= sizeof(text))
        return false;
    memcpy(text, v, len);
    text[len] = '\0';
    return inet_pton(af, text, &a) == 1;
}

bool
admin_host_allowed(const char *v, size_t len, const char *hosts)
{
    size_t hlen;
    unsigned port;
    if (!split_host_port(v, len, &hlen, &port))
        return false;
    /* A browser's URL parser turns every IPv4 form into dotted decimal, so that is all we take. */
    if (v[0] == '[')
        return is_ip_literal(AF_INET6, v + 1, hlen - 2);
    if (is_ip_literal(AF_INET, v, hlen) || equal_nocase(v, hlen, "localhost"))
        return true;
    for (const char *p = hosts ? hosts : ""; *p;) {
        size_t n = strcspn(p, ",");
        if (n == hlen && strncasecmp(p, v, n) == 0)
            return true;
        p += n + (p[n] == ',');
    }
    return false;
}

bool
admin_origin_same(const char *origin, size_t olen, const char *host, size_t hlen)
{
    static const char scheme[] = "http://";
    size_t ohost, hhost;
    unsigned oport, hport;
    if (olen < sizeof(scheme) - 1 || strncasecmp(origin, scheme, sizeof(scheme) - 1) != 0)
        return false;
    origin += sizeof(scheme) - 1;
    olen -= sizeof(scheme) - 1;
    if (!split_host_port(origin, olen, &ohost, &oport) ||
        !split_host_port(host, hlen, &hhost, &hport))
        return false;
    return ohost == hhost && strncasecmp(origin, host, ohost) == 0 && oport == hport;
}

bool
admin_ctype_is_simple(const char *v, size_t len)
{
    const char *semi = memchr(v, ';', len);
    if (semi)
        len = (size_t)(semi - v);
    v = trim_ows(v, &len);
    return equal_nocase(v, len, "application/x-www-form-urlencoded") ||
           equal_nocase(v, len, "multipart/form-data") || equal_nocase(v, len, "text/plain");
}

int
admin_check_request(const struct admin_request *rq, const char *hosts, const char **why)
{
    const struct admin_field *host = &rq->host, *origin = &rq->origin;
    const struct admin_field *ctype = &rq->content_type, *site = &rq->fetch_site;

    /* Two of them could let one pass the check and the other be acted on. */
    if (host->n > 1 || origin->n > 1 || ctype->n > 1 || site->n > 1 || rq->authorization.n > 1) {
        *why = "bad request: Host, Origin, Content-Type, Sec-Fetch-Site or Authorization "
               "repeated\n";
        return 400;
    }
    /* DNS rebinding: a page's own name, resolved to this address, shows in Host. */
    if (host->v && !admin_host_allowed(host->v, host->len, hosts)) {
        *why = "forbidden: Host must be an IP address, localhost or a name in admin_hosts\n";
        return 403;
    }
    /* Fetch metadata: only the user's own navigation ("none") or this origin. */
    if (site->v && !equal_nocase(site->v, site->len, "same-origin") &&
        !equal_nocase(site->v, site->len, "none")) {
        *why = "forbidden: sent by another site (Sec-Fetch-Site)\n";
        return 403;
    }
    if (origin->v && !(host->v && admin_origin_same(origin->v, origin->len, host->v, host->len))) {
        *why = "forbidden: sent by another origin (Origin)\n";
        return 403;
    }
    /* What a form or a no-cors fetch sends without a preflight, whatever Origin says. */
    if (strcmp(rq->method, "POST") == 0 && ctype->v &&
        admin_ctype_is_simple(ctype->v, ctype->len)) {
        *why = "unsupported: POST with a form or text/plain body; send no body (curl -X POST)\n";
        return 415;
    }
    return 0;
}

/* ---- the bearer token (pure, but for the file read) */

/* RFC 6750 section 2.1 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=". */
static bool
is_b64token(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && (((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'z') ||
                     (p[i] >= '0' && p[i] <= '9') || strchr("-._~+/", p[i])))
        i++;
    if (i == 0)
        return false;
    while (i < n && p[i] == '=')
        i++;
    return i == n;
}

bool
admin_bearer(const char *v, size_t len, const char **tok, size_t *tlen)
{
    static const char scheme[] = "Bearer";
    size_t n = sizeof(scheme) - 1, i = n;
    if (len <= n || strncasecmp(v, scheme, n) != 0 || v[n] != ' ')
        return false;
    while (i < len && v[i] == ' ')
        i++;
    if (!is_b64token(v + i, len - i))
        return false;
    *tok = v + i;
    *tlen = len - i;
    return true;
}

void
admin_token_digest(const char *tok, size_t len, unsigned char digest[ADMIN_TOKEN_DIGEST])
{
    crypto_generichash(digest, ADMIN_TOKEN_DIGEST, (const unsigned char *)tok, len, NULL, 0);
}

bool
admin_token_ok(const unsigned char digest[ADMIN_TOKEN_DIGEST], const char *tok, size_t len)
{
    unsigned char d[ADMIN_TOKEN_DIGEST];
    admin_token_digest(tok, len, d);
    return sodium_memcmp(d, digest, ADMIN_TOKEN_DIGEST) == 0;
}

int
admin_check_auth(const struct admin_request *rq, const unsigned char *digest, const char **why)
{
    const struct admin_field *f = &rq->authorization;
    const char *tok;
    size_t tlen;
    if (!digest || (strcmp(rq->method, "GET") == 0 && strcmp(rq->path, "/healthz") == 0))
        return 0;
    if (f->v && admin_bearer(f->v, f->len, &tok, &tlen) && admin_token_ok(digest, tok, tlen))
        return 0;
    *why = "unauthorized: send Authorization: Bearer with the admin token\n";
    return 401;
}

/*
 * The token file's line into tok (cap bytes, NUL-ended): its length, or
 * -errno with err naming path (never the token).
 */
static int
token_file(const char *path, char *tok, size_t cap, char *err, size_t errlen)
{
    char buf[ADMIN_TOKEN_MAX + 3];
    struct stat st;
    ssize_t n = 0;
    int ret = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd == -1) {
        ret = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return ret;
    }
    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
        ret = -EINVAL;
        snprintf(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    /* Like ssh with its keys: a secret others may read or replace is no secret. */
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        ret = -EPERM;
        snprintf(err, errlen,
                 "%s: mode %04o lets group or others read or write it; chmod 600 %s (owned by "
                 "the user ringsocks runs as)",
                 path, (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    for (ssize_t r; (size_t)n < sizeof(buf) && (r = read(fd, buf + n, sizeof(buf) - (size_t)n));) {
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            ret = -errno;
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            goto out;
        }
        n += r;
    }
    if (n && buf[n - 1] == '\n')
        n--;
    if (n && buf[n - 1] == '\r')
        n--;
    ret = -EINVAL;
    if (memchr(buf, '\n', (size_t)n))
        snprintf(err, errlen, "%s: more than one line", path);
    else if (n < ADMIN_TOKEN_MIN)
        snprintf(err, errlen, "%s:1: the token is shorter than %d bytes", path, ADMIN_TOKEN_MIN);
    else if (n > ADMIN_TOKEN_MAX || (size_t)n >= cap)
        snprintf(err, errlen, "%s:1: the token is longer than %d bytes", path, ADMIN_TOKEN_MAX);
    else if (!is_b64token(buf, (size_t)n))
        snprintf(err, errlen,
                 "%s:1: the token holds a byte a bearer token cannot (letters, digits, "
                 "-._~+/ and a trailing =)",
                 path);
    else
        ret = (int)n;
    if (ret > 0) {
        memcpy(tok, buf, (size_t)n);
        tok[n] = '\0';
    }
out:
    sodium_memzero(buf, sizeof(buf));
    close(fd);
    return ret;
}

int
admin_token_load(const char *path, char *tok, size_t cap, char *err, size_t errlen)
{
    return token_file(path, tok, cap, err, errlen);
}

int
admin_token_read(const char *path, unsigned char digest[ADMIN_TOKEN_DIGEST], char *err,
                 size_t errlen)
{
    char tok[ADMIN_TOKEN_MAX + 1];
    int n = token_file(path, tok, sizeof(tok), err, errlen);
    if (n >= 0) {
        admin_token_digest(tok, (size_t)n, digest);
        sodium_memzero(tok, sizeof(tok));
    }
    return n < 0 ? n : 0;
}

bool
admin_addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24 == 127;
    if (sa->sa_family != AF_INET6)
        return false;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

bool
admin_needs_token(const struct sockaddr *sa)
{
    return (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) && !admin_addr_is_loopback(sa);
}

int
admin_hosts_add(char *list, size_t cap, const char *name)
{
    /* The one definition of a host name (hostname.h), kept in its normal form. */
    char norm[HOSTNAME_MAX + 1];
    int len = hostname_norm(name, strnlen(name, HOSTNAME_MAX + 2), norm);
    if (len < 0)
        return -EINVAL;
    size_t used = strlen(list);
    if (used + (used > 0) + (size_t)len + 1 > cap)
        return -ENOSPC;
    snprintf(list + used, cap - used, "%s%s", used ? "," : "", norm);
    return 0;
}

/* ---- responses */

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *
status_text(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 415:
        return "Unsupported Media Type";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

static void
respond(struct admin_client *c, int code, const char *allow, const char *ctype, const char *body,
        size_t len)
{
    int n =
        snprintf(c->head, sizeof(c->head),
                 "HTTP/1.1 %d %s\r\n"
                 "Content-Type: %s\r\n"
                 "Content-Length: %zu\r\n"
                 "%s%s%s%s"
                 "Cache-Control: no-store\r\n"
                 "Connection: close\r\n"
                 "\r\n",
                 code, status_text(code), ctype, len, allow ? "Allow: " : "", allow ? allow : "",
                 allow ? "\r\n" : "", code == 401 ? "WWW-Authenticate: Bearer\r\n" : "");
    c->head_len = n > 0 && (size_t)n < sizeof(c->head) ? (size_t)n : 0;
    c->body = body;
    c->body_len = len;
    c->sent = 0;
    c->state = AC_WRITE;
    c->deadline_ms = now_ms() + ADMIN_WRITE_TIMEOUT_MS;
}

static void
respond_text(struct admin_client *c, int code, const char *allow, const char *text)
{
    respond(c, code, allow, "text/plain; charset=utf-8", text, strlen(text));
}

/* A handler's message as the body: NUL-terminated, never empty, ending in "\n". */
static void
respond_msg(struct admin_client *c, int code, const char *fallback)
{
    c->msg[ADMIN_MSG_MAX - 1] = '\0';
    size_t n = strlen(c->msg);
    if (n == 0)
        n = (size_t)snprintf(c->msg, ADMIN_MSG_MAX, "%s", fallback);
    if (c->msg[n - 1] != '\n') {
        c->msg[n++] = '\n';
        c->msg[n] = '\0';
    }
    respond_text(c, code, NULL, c->msg);
}

enum route { R_METRICS, R_HEALTHZ, R_RELOAD, R_DRAIN, R__COUNT };

static const struct {
    const char *path;
    const char *method;
} routes[R__COUNT] = {
    [R_METRICS] = {"/metrics", "GET"},
    [R_HEALTHZ] = {"/healthz", "GET"},
    [R_RELOAD] = {"/reload", "POST"},
    [R_DRAIN] = {"/drain", "POST"},
};

static bool
route_served(const struct admin_handlers *h, enum route r)
{
    switch (r) {
    case R_METRICS:
        return h->metrics != NULL;
    case R_HEALTHZ:
        return h->health != NULL;
    case R_RELOAD:
        return h->reload != NULL;
    case R_DRAIN:
        return h->drain != NULL;
    default:
        return false;
    }
}

/* A path none of the fixed routes serves: the other handler's answer, else 404. */
static void
route_other(struct admin_client *c, const struct admin_request *rq, const struct admin_handlers *h)
{
    struct admin_reply out = {0};
    if (h->other)
        h->other(h->arg, rq, &out);
    if (out.status == 0) {
        free(out.body);
        respond_text(c, 404, NULL, "not found\n");
        return;
    }
    c->body_owned = out.body;
    respond(c, out.status, out.allow, out.ctype ? out.ctype : "application/json", out.body,
            out.body ? out.len : 0);
}

static void
route(struct admin_client *c, const struct admin_request *rq, const struct admin_handlers *h)
{
    const char *method = rq->method, *path = rq->path;
    int r = 0;
    while (r < R__COUNT && !(strcmp(path, routes[r].path) == 0 && route_served(h, r)))
        r++;
    if (r == R__COUNT) {
        route_other(c, rq, h);
        return;
    }
    if (strcmp(method, routes[r].method) != 0) {
        respond_text(c, 405, routes[r].method, "method not allowed\n");
        return;
    }

    c->msg[0] = '\0';
    switch (r) {
    case R_METRICS: {
        char *body = NULL;
        size_t len = h->metrics(h->arg, &body);
        if (!body) {
            respond_text(c, 500, NULL, "metrics unavailable\n");
            return;
        }
        c->body_owned = body;
        respond(c, 200, NULL, "text/plain; version=0.0.4; charset=utf-8", body, len);
        return;
    }
    case R_HEALTHZ:
        if (h->health(h->arg, c->msg, ADMIN_MSG_MAX) == 0)
            respond_text(c, 200, NULL, "ok\n");
        else
            respond_msg(c, 503, "unhealthy");
        return;
    case R_RELOAD:
        if (h->reload(h->arg, c->msg, ADMIN_MSG_MAX) == 0)
            respond_msg(c, 200, "reloaded");
        else
            respond_msg(c, 500, "reload failed");
        return;
    case R_DRAIN:
        h->drain(h->arg);
        respond_text(c, 202, NULL, "draining\n");
        return;
    }
}

/* ---- connections */

static void
client_close(struct admin *a, struct admin_client *c)
{
    close(c->fd);
    free(c->body_owned);
    c->body_owned = NULL;
    c->fd = -1;
    c->state = AC_FREE;
    /*
     * An fd is free: the spare, if given up, takes it back at once (a shard
     * could take it otherwise), and a listener paused for want of fds may
     * accept again.
     */
    if (a->spare_fd < 0)
        a->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    a->accept_resume_ms = 0;
}

/*
 * Response written: shut our side and read until the client's EOF. Closing
 * with request bytes unread (a POST body) would send an RST that can destroy
 * the response before the client reads it (RFC 9112 section 9.6). At most
 * ADMIN_LINGER_STEP bytes per call: a client sending as fast as we read
 * would otherwise keep the control thread here; the rest waits for the
 * next turn of the loop, and the deadline ends it.
 */
static void
client_linger(struct admin *a, struct admin_client *c)
{
    char sink[4096];
    if (c->state != AC_LINGER) {
        shutdown(c->fd, SHUT_WR);
        c->state = AC_LINGER;
    }
    for (size_t got = 0; got < ADMIN_LINGER_STEP;) {
        ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        client_close(a, c);
        return;
    }
}

static void
client_write(struct admin *a, struct admin_client *c)
{
    for (;;) {
        struct iovec iov[2];
        int n_iov = 0;
        size_t off = c->sent;
        if (off < c->head_len) {
            iov[n_iov].iov_base = c->head + off;
            iov[n_iov++].iov_len = c->head_len - off;
            off = 0;
        } else {
            off -= c->head_len;
        }
        if (off < c->body_len) {
            iov[n_iov].iov_base = (char *)c->body + off;
            iov[n_iov++].iov_len = c->body_len - off;
        }
        if (n_iov == 0) {
            client_linger(a, c);
            return;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n_iov};
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n >= 0) {
            c->sent += (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            client_close(a, c);
        return;
    }
}

static void
client_read(struct admin *a, struct admin_client *c, const struct admin_handlers *h)
{
    struct admin_request rq;

    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            /* EOF or error before a whole head: nobody to answer. */
            client_close(a, c);
            return;
        }
        c->in_len += (size_t)n;
        int r = admin_parse_request(c->in, c->in_len, &rq);
        if (r < 0) {
            respond_text(c, 400, NULL, "bad request\n");
            break;
        }
        if (r > 0) {
            const char *why;
            int status = admin_check_request(&rq, a->hosts, &why);
            if (!status)
                status = admin_check_auth(&rq, a->has_token ? a->token : NULL, &why);
            if (status)
                respond_text(c, status, NULL, why);
            else
                route(c, &rq, h);
            break;
        }
    }
    client_write(a, c);
}

static void
client_step(struct admin *a, struct admin_client *c, const struct admin_handlers *h)
{
    switch (c->state) {
    case AC_READ:
        client_read(a, c, h);
        break;
    case AC_WRITE:
        client_write(a, c);
        break;
    case AC_LINGER:
        client_linger(a, c);
        break;
    case AC_FREE:
        break;
    }
}

/*
 * The client to drop for a new one: the oldest still sending its head (a
 * real request arrives whole with its connection, so that one is slow or
 * silent), else the oldest lingering after its answer, else the oldest being
 * written to. NULL when there is none.
 */
static struct admin_client *
victim(struct admin *a)
{
    static const int rank[] = {[AC_READ] = 0, [AC_LINGER] = 1, [AC_WRITE] = 2};
    struct admin_client *v = NULL;
    for (unsigned i = 0; i < ADMIN_MAX_CLIENTS; i++) {
        struct admin_client *c = &a->c[i];
        if (c->state == AC_FREE)
            continue;
        if (!v || rank[c->state] < rank[v->state] ||
            (rank[c->state] == rank[v->state] && c->seq < v->seq))
            v = c;
    }
    return v;
}

/*
 * accept4(), and when the fd table is full (EMFILE, ENFILE) make room: the
 * spare first, then a client's fd. The fd or -errno; -EMFILE when no room
 * could be made.
 */
static int
accept_fd(struct admin *a)
{
    for (int tries = 0;; tries++) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            return fd;
        if (errno == EINTR)
            continue;
        if (errno != EMFILE && errno != ENFILE)
            return -errno;
        /*
         * accept4() takes an fd before it looks at the queue: make room only
         * for a connection that is there. And a shard may take the fd we free
         * before accept4() does: a few tries, then give up.
         */
        struct pollfd pending = {.fd = a->fd, .events = POLLIN};
        if (poll(&pending, 1, 0) != 1)
            return -EAGAIN;
        if (tries == 3)
            return -EMFILE;
        if (a->spare_fd >= 0) {
            close(a->spare_fd);
            a->spare_fd = -1;
            continue;
        }
        struct admin_client *v = victim(a);
        if (!v)
            return -EMFILE;
        client_close(a, v); /* its fd becomes the spare, given up on the next try */
    }
}

/* Accept what is pending (up to ADMIN_ACCEPT_BATCH) and try each at once. */
static void
admin_accept(struct admin *a, const struct admin_handlers *h)
{
    for (unsigned k = 0; k < ADMIN_ACCEPT_BATCH; k++) {
        int fd = accept_fd(a);
        if (fd == -ECONNABORTED)
            continue;
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
            /* Not polled until then (or until a client closes), so it cannot spin the loop. */
            a->accept_resume_ms = now_ms() + ADMIN_FD_RETRY_MS;
            return;
        }
        if (fd < 0)
            return;
        struct admin_client *c = NULL;
        for (unsigned i = 0; i < ADMIN_MAX_CLIENTS && !c; i++)
            if (a->c[i].state == AC_FREE)
                c = &a->c[i];
        if (!c) {
            c = victim(a);
            client_close(a, c);
        }
        c->fd = fd;
        c->state = AC_READ;
        c->seq = ++a->seq;
        c->deadline_ms = now_ms() + ADMIN_READ_TIMEOUT_MS;
        c->in_len = 0;
        c->body_owned = NULL;
        /* Most requests arrive with the connection: answer now rather than after a poll. */
        client_step(a, c, h);
    }
}

unsigned
admin_poll_prepare(struct admin *a, struct pollfd *pfd, int *timeout_ms)
{
    int64_t now = now_ms();
    unsigned n = 1;

    /* Lost to a shard that took the fd first: try again while there is room. */
    if (a->spare_fd < 0)
        a->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pfd[0] = (struct pollfd){.fd = a->fd, .events = POLLIN};
    if (a->accept_resume_ms > now) {
        pfd[0].fd = -1;
        if (a->accept_resume_ms - now < *timeout_ms)
            *timeout_ms = (int)(a->accept_resume_ms - now);
    }
    for (unsigned i = 0; i < ADMIN_MAX_CLIENTS; i++) {
        struct admin_client *c = &a->c[i];
        if (c->state == AC_FREE)
            continue;
        int64_t left = c->deadline_ms > now ? c->deadline_ms - now : 0;
        if (left < *timeout_ms)
            *timeout_ms = (int)left;
        pfd[n] = (struct pollfd){.fd = c->fd, .events = c->state == AC_WRITE ? POLLOUT : POLLIN};
        a->polled[n - 1] = i;
        n++;
    }
    a->n_polled = n;
    return n;
}

void
admin_poll_done(struct admin *a, const struct pollfd *pfd, unsigned n,
                const struct admin_handlers *h)
{
    if (n > a->n_polled)
        n = a->n_polled;
    for (unsigned k = 1; k < n; k++) {
        struct admin_client *c = &a->c[a->polled[k - 1]];
        /* Evicted meanwhile, or its slot already reused by another fd. */
        if (pfd[k].revents && c->state != AC_FREE && c->fd == pfd[k].fd)
            client_step(a, c, h);
    }
    int64_t now = now_ms();
    for (unsigned i = 0; i < ADMIN_MAX_CLIENTS; i++)
        if (a->c[i].state != AC_FREE && now >= a->c[i].deadline_ms)
            client_close(a, &a->c[i]);
    if (n > 0 && (pfd[0].revents & POLLIN))
        admin_accept(a, h);
    a->n_polled = 0;
}

/* ---- listening socket */

static void
addr_text(const struct sockaddr *sa, socklen_t len, char *buf, size_t cap)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        snprintf(buf, cap, "(address)");
    else if (sa->sa_family == AF_INET6)
        snprintf(buf, cap, "[%s]:%s", host, serv);
    else
        snprintf(buf, cap, "%s:%s", host, serv);
}

/* A struct admin with no socket yet: NULL on ENOMEM. */
static struct admin *
admin_new(const char *hosts)
{
    struct admin *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->fd = -1;
    a->spare_fd = -1;
    for (unsigned i = 0; i < ADMIN_MAX_CLIENTS; i++)
        a->c[i].fd = -1;
    snprintf(a->hosts, sizeof(a->hosts), "%s", hosts ? hosts : "");
    return a;
}

/* listen() on a->fd, bound, and take the spare fd. 0 or -1 with errno. */
static int
admin_listen(struct admin *a)
{
    if (listen(a->fd, ADMIN_BACKLOG) == -1)
        return -1;
    /* Best effort: without it a full fd table leaves clients unanswered until it clears. */
    a->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return 0;
}

struct admin *
admin_open(const struct sockaddr *addr, const char *hosts, char *err, size_t errlen)
{
    struct admin *a = NULL;
    char where[NI_MAXHOST + NI_MAXSERV + 4];
    const char *what;
    socklen_t alen;
    int one = 1;

    if (addr->sa_family == AF_INET) {
        alen = sizeof(struct sockaddr_in);
    } else if (addr->sa_family == AF_INET6) {
        alen = sizeof(struct sockaddr_in6);
    } else {
        snprintf(err, errlen, "admin: address family %d not supported", addr->sa_family);
        return NULL;
    }
    addr_text(addr, alen, where, sizeof(where));
    if (hosts && strlen(hosts) >= ADMIN_HOSTS_MAX) {
        snprintf(err, errlen, "admin %s: the list of host names is too long", where);
        return NULL;
    }

    what = "allocation";
    a = admin_new(hosts);
    if (!a) {
        errno = ENOMEM;
        goto out;
    }
    what = "socket";
    a->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (a->fd == -1)
        goto out;
    what = "SO_REUSEADDR";
    if (setsockopt(a->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
        goto out;
    /* One family per socket, whatever net.ipv6.bindv6only says. */
    what = "IPV6_V6ONLY";
    if (addr->sa_family == AF_INET6 &&
        setsockopt(a->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
        goto out;
    what = "bind";
    if (bind(a->fd, addr, alen) == -1)
        goto out;
    what = "listen";
    if (admin_listen(a) == -1)
        goto out;
    return a;

out:
    snprintf(err, errlen, "admin %s: %s: %s", where, what, strerror(errno));
    if (a && a->fd >= 0)
        close(a->fd);
    free(a);
    return NULL;
}

/*
 * A file left at sun's path: removed when it is a socket no process answers
 * on (a ringsocks that did not exit cleanly). 0, or -1 with the reason.
 */
static int
unix_clear_stale(const struct sockaddr_un *sun, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(sun->sun_path, &st) == -1)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "admin_socket %s: exists and is not a socket; not removed",
                 sun->sun_path);
        return -1;
    }
    /* Non-blocking: a listener with a full backlog (EAGAIN) is in use as well. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe == -1)
        return -1;
    int ret = connect(probe, (const struct sockaddr *)sun, sizeof(*sun));
    bool live = ret == 0 || errno == EAGAIN;
    close(probe);
    if (live) {
        snprintf(err, errlen, "admin_socket %s: in use: another process answers on it",
                 sun->sun_path);
        return -1;
    }
    return unlink(sun->sun_path);
}

struct admin *
admin_open_unix(const char *path, unsigned mode, bool chown_it, uid_t uid, gid_t gid,
                const char *hosts, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct admin *a = NULL;
    struct stat st;
    const char *what = "path";

    err[0] = '\0';
    errno = ENAMETOOLONG;
    if (strlen(path) >= sizeof(sun.sun_path))
        goto out;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    what = "allocation";
    errno = ENOMEM;
    a = admin_new(hosts);
    if (!a || !(a->unix_path = strdup(path)))
        goto out;
    what = "removing the old socket";
    if (unix_clear_stale(&sun, err, errlen) == -1)
        goto out;
    what = "socket";
    a->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (a->fd == -1)
        goto out;
    /* Main thread, before any other thread: the umask is briefly the process's. */
    what = "bind";
    mode_t old = umask(0177);
    int ret = bind(a->fd, (const struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (ret == -1)
        goto out;
    what = "stat";
    if (lstat(path, &st) == -1)
        goto out;
    a->unix_dev = st.st_dev;
    a->unix_ino = st.st_ino;
    what = "chown";
    if (chown_it && chown(path, uid, gid) == -1)
        goto out;
    what = "chmod";
    if (chmod(path, mode) == -1)
        goto out;
    what = "listen";
    if (admin_listen(a) == -1)
        goto out;
    return a;

out:
    if (!err[0])
        snprintf(err, errlen, "admin_socket %s: %s: %s", path, what, strerror(errno));
    admin_close(a);
    return NULL;
}

struct admin *
admin_adopt(int fd, const char *path, const char *hosts, char *err, size_t errlen)
{
    struct stat st;
    struct admin *a = admin_new(hosts);
    if (!a || (path && !(a->unix_path = strdup(path)))) {
        snprintf(err, errlen, "admin: out of memory");
        free(a);
        return NULL;
    }
    a->fd = fd;
    /* Ours to remove at close while it is still the file the socket was bound to. */
    if (path && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        a->unix_dev = st.st_dev;
        a->unix_ino = st.st_ino;
    }
    /* listen() again on a listening socket only sets the backlog. */
    if (admin_listen(a) == -1) {
        snprintf(err, errlen, "admin: listen: %s", strerror(errno));
        a->fd = -1;
        a->unix_ino = 0;
        admin_close(a);
        return NULL;
    }
    return a;
}

void
admin_keep_path(struct admin *a)
{
    if (a)
        a->unix_ino = 0;
}

void
admin_set_token(struct admin *a, const unsigned char *digest)
{
    a->has_token = digest != NULL;
    if (digest)
        memcpy(a->token, digest, ADMIN_TOKEN_DIGEST);
    else
        sodium_memzero(a->token, sizeof(a->token));
}

int
admin_fd(const struct admin *a)
{
    return a->fd;
}

void
admin_close(struct admin *a)
{
    if (!a)
        return;
    for (unsigned i = 0; i < ADMIN_MAX_CLIENTS; i++)
        if (a->c[i].state != AC_FREE)
            client_close(a, &a->c[i]);
    if (a->fd >= 0)
        close(a->fd);
    if (a->spare_fd >= 0)
        close(a->spare_fd);
    /* Only the file this admin made: another process may have replaced it since. */
    struct stat st;
    if (a->unix_path && a->unix_ino && lstat(a->unix_path, &st) == 0 && st.st_dev == a->unix_dev &&
        st.st_ino == a->unix_ino)
        unlink(a->unix_path);
    free(a->unix_path);
    free(a);
}
