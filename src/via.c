/*
 * via.c - upstream chaining's parent lists and the client side of the handshake
 * with a parent (via.h). Pure apart from the allocation of a list: the SOCKS
 * messages and reply parsers are socksload's (tools/socksload/socks.c, url.c),
 * the HTTP CONNECT request and response are here.
 */
#include "via.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <sodium.h>

#include "socksload.h"

struct via_parent {
    struct via_list *list; /* the list it is in */
    uint32_t ident;        /* a hash of what makes it this parent: address, scheme, credentials */
    struct url u;
    union sockaddr_inx addr;
    char label[80];
    /* http with a user: "Basic " and base64 of "user:pass", made once at load. */
    char basic[700];
};

struct via_list {
    atomic_uint refs;
    unsigned n;
    struct via_parent p[];
};

enum {
    VIA_STEP_S5_METHOD,
    VIA_STEP_S5_AUTH,
    VIA_STEP_S5_REPLY,
    VIA_STEP_S4_REPLY,
    VIA_STEP_HTTP_REPLY,
};

static int
parent_parse(struct via_parent *vp, const char *s, unsigned i, char *why, size_t whycap)
{
    char err[200];
    if (url_parse(&vp->u, s, err, sizeof(err)) < 0) {
        /* url_parse() says "what: PART OF THE URL": not a part that may be a password, which
         * would reach the logs. */
        char *colon = strstr(err, ": ");
        if (colon && strpbrk(s, "@%"))
            snprintf(colon, sizeof(err) - (size_t)(colon - err),
                     " (the URL is not repeated: it may hold a password)");
        snprintf(why, whycap, "via[%u]: %s", i, err);
        return -EINVAL;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    if (url_to_sockaddr(vp->u.host, vp->u.host_type, vp->u.port, false, &ss, &len) < 0) {
        snprintf(why, whycap,
                 "via[%u]: parent %s is not an IP address (names are not resolved: write the "
                 "address)",
                 i, vp->u.host);
        return -EINVAL;
    }
    memset(&vp->addr, 0, sizeof(vp->addr));
    memcpy(&vp->addr, &ss, len);
    char a[INET6_ADDRSTRLEN + 8];
    addr_format(&vp->addr.sa, a, sizeof(a));
    snprintf(vp->label, sizeof(vp->label), "%s://%s", url_scheme_str(vp->u.scheme), a);
    /* FNV-1a over the label and the credentials: two rules with one gateway and different
     * passwords are two parents to the health memory (a refused password is not a gateway
     * down). */
    uint32_t x = 2166136261u;
    const char *parts[] = {vp->label, vp->u.user, ":", vp->u.pass};
    for (size_t k = 0; k < sizeof(parts) / sizeof(parts[0]); k++)
        for (const char *q = parts[k]; *q; q++)
            x = (x ^ (uint8_t)*q) * 16777619u;
    vp->ident = x;
    vp->basic[0] = '\0';
    if (vp->u.scheme == URL_HTTP && vp->u.has_user) {
        char cred[2 * URL_FIELD_MAX + 2];
        int n = snprintf(cred, sizeof(cred), "%s:%s", vp->u.user, vp->u.pass);
        memcpy(vp->basic, "Basic ", 6);
        sodium_bin2base64(vp->basic + 6, sizeof(vp->basic) - 6, (const unsigned char *)cred,
                          (size_t)n, sodium_base64_VARIANT_ORIGINAL);
        sodium_memzero(cred, sizeof(cred));
    }
    return 0;
}

struct via_list *
via_list_new(const char *const *urls, unsigned n, char *why, size_t whycap)
{
    if (n == 0 || n > VIA_MAX) {
        snprintf(why, whycap, "via: %u parents; a rule names 1 to %u", n, VIA_MAX);
        return NULL;
    }
    struct via_list *vl = calloc(1, sizeof(*vl) + n * sizeof(vl->p[0]));
    if (!vl) {
        snprintf(why, whycap, "via: out of memory");
        return NULL;
    }
    atomic_init(&vl->refs, 1);
    vl->n = n;
    for (unsigned i = 0; i < n; i++) {
        vl->p[i].list = vl;
        if (parent_parse(&vl->p[i], urls[i], i, why, whycap) < 0) {
            via_list_put(vl);
            return NULL;
        }
    }
    return vl;
}

void
via_list_get(struct via_list *vl)
{
    atomic_fetch_add_explicit(&vl->refs, 1, memory_order_relaxed);
}

void
via_list_put(struct via_list *vl)
{
    if (!vl || atomic_fetch_sub_explicit(&vl->refs, 1, memory_order_acq_rel) != 1)
        return;
    sodium_memzero(vl->p, vl->n * sizeof(vl->p[0])); /* the parents' passwords */
    free(vl);
}

unsigned
via_count(const struct via_list *vl)
{
    return vl->n;
}

const union sockaddr_inx *
via_addr(const struct via_list *vl, unsigned i)
{
    return &vl->p[i].addr;
}

const char *
via_label(const struct via_list *vl, unsigned i)
{
    return vl->p[i].label;
}

uint32_t
via_ident(const struct via_list *vl, unsigned i)
{
    return vl->p[i].ident;
}

bool
via_hs_asked_target(const struct via_hs *h)
{
    return h->step == VIA_STEP_S5_REPLY;
}

const struct via_parent *
via_parent_of(struct via_list *vl, unsigned i)
{
    return &vl->p[i];
}

const union sockaddr_inx *
via_parent_addr(const struct via_parent *p)
{
    return &p->addr;
}

void
via_parent_put(const struct via_parent *p)
{
    if (p)
        via_list_put(p->list);
}

/* socksload's destination for t. */
static void
to_dest(const struct via_target *t, struct socks_dest *d)
{
    memset(d, 0, sizeof(*d));
    d->port = t->port;
    if (t->kind == VIA_T_NAME) {
        d->type = URL_HOST_NAME;
        snprintf(d->name, sizeof(d->name), "%s", t->name);
    } else {
        d->type = t->kind == VIA_T_IPV4 ? URL_HOST_IPV4 : URL_HOST_IPV6;
        memcpy(d->addr, t->addr, t->kind == VIA_T_IPV4 ? 4 : 16);
    }
}

/* "CONNECT host:port HTTP/1.1", Host, and the parent's credentials. */
static size_t
http_request(const struct via_parent *vp, const struct via_target *t, uint8_t *out)
{
    char host[URL_FIELD_MAX + 3];
    if (t->kind == VIA_T_NAME) {
        snprintf(host, sizeof(host), "%s", t->name);
    } else if (t->kind == VIA_T_IPV4) {
        inet_ntop(AF_INET, t->addr, host, sizeof(host));
    } else {
        host[0] = '[';
        inet_ntop(AF_INET6, t->addr, host + 1, sizeof(host) - 2);
        strcat(host, "]");
    }
    int n =
        snprintf((char *)out, VIA_MSG_MAX, "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\n%s%s%s\r\n",
                 host, t->port, host, t->port, vp->basic[0] ? "Proxy-Authorization: " : "",
                 vp->basic, vp->basic[0] ? "\r\n" : "");
    return (size_t)n;
}

size_t
via_hs_start(struct via_hs *h, const struct via_list *vl, unsigned i, const struct via_target *t,
             uint8_t *out)
{
    const struct via_parent *vp = &vl->p[i];
    memset(h, 0, sizeof(*h));
    h->vl = vl;
    h->t = t;
    h->parent = (uint8_t)i;
    switch (vp->u.scheme) {
    case URL_SOCKS5:
    case URL_SOCKS5H:
        h->step = VIA_STEP_S5_METHOD;
        return socks_greeting(out, &vp->u);
    case URL_SOCKS4:
        if (t->kind != VIA_T_IPV4)
            return 0; /* SOCKS4 carries an IPv4 address and nothing else */
        /* fall through */
    case URL_SOCKS4A:
        if (t->kind == VIA_T_IPV6)
            return 0;
        h->step = VIA_STEP_S4_REPLY;
        break;
    case URL_HTTP:
        h->step = VIA_STEP_HTTP_REPLY;
        return http_request(vp, t, out);
    }
    struct socks_dest d;
    to_dest(t, &d);
    return socks_request(out, &vp->u, SOCKS_CMD_CONNECT, &d);
}

static enum via_res
broken(struct via_hs *h, const char *why)
{
    h->why = why;
    return VIA_BROKEN;
}

static enum via_res
refused(struct via_hs *h, uint8_t rep)
{
    h->rep = rep;
    return VIA_REFUSED;
}

/* The HTTP status of a complete response header, as a SOCKS5 reply code. */
static enum via_res
http_outcome(struct via_hs *h, unsigned status)
{
    if (status / 100 == 2) {
        h->rep = 0;
        return VIA_OK;
    }
    switch (status) {
    case 407:
        return broken(h, h->vl->p[h->parent].basic[0] ? "parent refused our credentials"
                                                      : "parent asks for credentials");
    case 403:
        return refused(h, 0x02); /* not allowed by its rules */
    case 502:
        return refused(h, 0x04); /* it could not reach the target */
    case 504:
        return refused(h, 0x06); /* it timed out reaching the target */
    default:
        return refused(h, 0x01);
    }
}

static bool
is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/*
 * "HTTP/1.x SSS reason" and header lines, ended by an empty line, in p[0..len) (RFC 9112:
 * CRLF, or a bare LF, ends a line). A 1xx response is interim: taken, and the next one read.
 */
static enum via_res
http_feed(struct via_hs *h, const uint8_t *p, size_t len, size_t *used)
{
    static const char proto[] = "HTTP/1.";
    size_t k = len < sizeof(proto) - 1 ? len : sizeof(proto) - 1;
    if (memcmp(p, proto, k) != 0)
        return broken(h, "parent's reply is not HTTP");
    if (len < 13)
        return VIA_MORE;
    if (!is_digit(p[7]) || p[8] != ' ' || p[9] < '1' || p[9] > '5' || !is_digit(p[10]) ||
        !is_digit(p[11]) || (p[12] != ' ' && p[12] != '\r' && p[12] != '\n'))
        return broken(h, "parent's HTTP status line is malformed");
    /* The shard never holds more of a reply than VIA_REPLY_MAX: neither is more looked at. */
    if (len > VIA_REPLY_MAX)
        len = VIA_REPLY_MAX;
    for (size_t i = 12; i + 1 < len; i++) {
        if (p[i] != '\n')
            continue;
        size_t end = p[i + 1] == '\n'                                      ? i + 2
                     : p[i + 1] == '\r' && i + 2 < len && p[i + 2] == '\n' ? i + 3
                                                                           : 0;
        if (!end)
            continue;
        *used = end;
        unsigned status =
            (unsigned)(p[9] - '0') * 100 + (unsigned)(p[10] - '0') * 10 + (unsigned)(p[11] - '0');
        if (status < 200)
            return VIA_AGAIN;
        return http_outcome(h, status);
    }
    if (len >= VIA_REPLY_MAX)
        return broken(h, "parent's HTTP response header is too long");
    return VIA_MORE;
}

/* A SOCKS5 or SOCKS4 reply code as ours. */
static enum via_res
socks_outcome(struct via_hs *h, const struct url *u, int code)
{
    if (socks_reply_ok(u, code)) {
        h->rep = 0;
        return VIA_OK;
    }
    if (u->scheme == URL_SOCKS4 || u->scheme == URL_SOCKS4A) {
        /* 91: rejected or failed, as SOCKS4 servers answer everything; 92, 93: identd, which
         * a parent asking for it will never get from us. */
        if (code == 91)
            return refused(h, 0x01);
        return broken(h, "parent wants identd (SOCKS4 reply 92/93)");
    }
    return refused(h, code >= 1 && code <= 8 ? (uint8_t)code : 0x01);
}

enum via_res
via_hs_feed(struct via_hs *h, const uint8_t *p, size_t len, size_t *used, uint8_t *out,
            size_t *out_len)
{
    const struct url *u = &h->vl->p[h->parent].u;
    int code = 0;
    ssize_t r;
    *used = 0;
    *out_len = 0;
    switch (h->step) {
    case VIA_STEP_HTTP_REPLY:
        return http_feed(h, p, len, used);
    case VIA_STEP_S5_METHOD:
        r = socks_parse_method(p, len, &code);
        if (r <= 0)
            return r == 0 ? VIA_MORE : broken(h, "parent's method reply is not SOCKS5");
        *used = (size_t)r;
        if (code == 0x02 && u->has_user) {
            h->step = VIA_STEP_S5_AUTH;
            *out_len = socks_auth_request(out, u, NULL);
            return VIA_SEND;
        }
        if (code != 0x00)
            return broken(h, code == 0xff ? "parent accepts none of our methods"
                                          : "parent chose a method we did not offer");
        break;
    case VIA_STEP_S5_AUTH:
        r = socks_parse_auth(p, len, &code);
        if (r <= 0)
            return r == 0 ? VIA_MORE : broken(h, "parent's password reply is malformed");
        *used = (size_t)r;
        if (code != 0)
            return broken(h, "parent refused our credentials");
        break;
    case VIA_STEP_S5_REPLY:
    case VIA_STEP_S4_REPLY: {
        struct sockaddr_storage bnd;
        r = socks_parse_reply(u, p, len, &code, &bnd);
        if (r <= 0)
            return r == 0 ? VIA_MORE : broken(h, "parent's reply is malformed");
        *used = (size_t)r;
        memset(&h->bnd, 0, sizeof(h->bnd));
        if (h->step == VIA_STEP_S5_REPLY && (bnd.ss_family == AF_INET || bnd.ss_family == AF_INET6))
            memcpy(&h->bnd, &bnd, addr_len((const struct sockaddr *)&bnd));
        return socks_outcome(h, u, code);
    }
    default:
        return broken(h, "no handshake");
    }
    /* Authenticated (or no authentication): the request. */
    struct socks_dest d;
    to_dest(h->t, &d);
    h->step = VIA_STEP_S5_REPLY;
    *out_len = socks_request(out, u, SOCKS_CMD_CONNECT, &d);
    return VIA_SEND;
}
