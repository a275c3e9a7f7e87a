/*
 * via.h - upstream chaining: the parents an allow rule sends its tunnels through
 * (rule key via = ["socks5://user:pass@192.0.2.1:1080", "http://..."]), and the
 * client side of the handshake with one parent as a pure state machine over bytes.
 *
 * A list is parsed once on the control thread (config.c), immutable afterwards and
 * counted: the policy snapshot holds one reference, and a shard that chains a
 * tunnel takes another for as long as the tunnel's handshake with its parents runs,
 * so a reload that drops the rule never pulls the list from under it. The
 * handshake functions are pure: they build the bytes to send and read the
 * parent's replies; the shard (chain.c) does the I/O through its ring.
 *
 * The URL syntax is curl's (socksload's url.c parses it): socks5://, socks5h://
 * (the same here: a name asked for is sent as a name, never resolved first),
 * socks4a://, socks4:// (IPv4 addresses only) and http:// (HTTP CONNECT with
 * Basic credentials). A parent is an IP address or "localhost": names are not
 * resolved, at load or later.
 */
#ifndef RINGSOCKS_VIA_H
#define RINGSOCKS_VIA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define VIA_MAX       8 /* parents per rule */
/* The longest message to a parent: an HTTP CONNECT with a 255-byte name twice and
 * Basic credentials of two 255-byte fields. */
#define VIA_MSG_MAX   1400
/* The longest reply read from a parent: an HTTP response header; longer is refused. */
#define VIA_REPLY_MAX 1024

struct via_list;

/*
 * Control thread: the list of the n URLs, or NULL with why ("via[2]: bad port: ...")
 * when one is malformed, names a host that is not an address, or there are none or
 * more than VIA_MAX. Its one reference belongs to the caller.
 */
struct via_list *via_list_new(const char *const *urls, unsigned n, char *why, size_t whycap);
/* Any thread: one more reference, and giving one back (the last frees the list). */
void via_list_get(struct via_list *vl);
void via_list_put(struct via_list *vl);

unsigned via_count(const struct via_list *vl);
/* Parent i's address (port set). */
const union sockaddr_inx *via_addr(const struct via_list *vl, unsigned i);
/* Parent i as "socks5://192.0.2.1:1080": no credentials, for logs and the admin API. */
const char *via_label(const struct via_list *vl, unsigned i);
/* A hash of parent i's address, scheme and credentials: who it is to a health memory. */
uint32_t via_ident(const struct via_list *vl, unsigned i);

/*
 * One parent of a list, to be kept where the list is not (a tunnel's slot: 8 bytes
 * instead of a list and an index). It stands for a reference on its list: the one the
 * caller held is passed to it, and via_parent_put() gives it back (NULL is ignored).
 */
struct via_parent;
const struct via_parent *via_parent_of(struct via_list *vl, unsigned i);
const union sockaddr_inx *via_parent_addr(const struct via_parent *p);
void via_parent_put(const struct via_parent *p);

/* What a tunnel asks its parent for. */
enum via_target_kind { VIA_T_IPV4, VIA_T_IPV6, VIA_T_NAME };
struct via_target {
    enum via_target_kind kind;
    const char *name; /* VIA_T_NAME: 1..255 bytes, NUL-terminated */
    uint8_t addr[16]; /* VIA_T_IPV4: the first 4 */
    uint16_t port;
};

/* A handshake with one parent, after via_hs_start(). */
struct via_hs {
    const struct via_list *vl;
    const struct via_target *t;
    uint8_t parent; /* index into vl */
    uint8_t step;   /* VIA_STEP_* (via.c) */
    /* VIA_OK: SOCKS5_REP_SUCCEEDED; VIA_REFUSED: the SOCKS5 reply code the parent's answer
     * maps to (HTTP 403: not allowed, 502: host unreachable, 504: TTL expired, ...). */
    uint8_t rep;
    /* VIA_BROKEN: what went wrong, a static string. Only the tests read it today: the
     * shard has no place to say it (no file writes there; the access log says
     * end=parent_failed). A reason label on ringsocks_via_parent_failures_total is the
     * way to show it to operators. */
    const char *why;
    /* VIA_OK: the address the parent reported it connected from (SOCKS5 with an IP
     * address), else AF_UNSPEC. */
    union sockaddr_inx bnd;
};

enum via_res {
    VIA_MORE,    /* the reply is incomplete: read more */
    VIA_SEND,    /* send the message in out, then read the reply */
    VIA_AGAIN,   /* a message was taken (an HTTP 1xx interim response): read the next */
    VIA_OK,      /* the parent connected the target: relay */
    VIA_REFUSED, /* the parent answered for the target (refused, unreachable, not allowed) */
    VIA_BROKEN,  /* the parent failed: malformed reply, our credentials refused */
};

/*
 * Start the handshake with parent i for t: the first message into out (VIA_MSG_MAX
 * bytes); its length, or 0 when this parent cannot carry t (socks4 and a name or an
 * IPv6 address). h keeps vl and t: both must outlive it.
 */
size_t via_hs_start(struct via_hs *h, const struct via_list *vl, unsigned i,
                    const struct via_target *t, uint8_t *out);
/*
 * The parent's unread bytes p[0..len): *used gets how many of them belong to the
 * handshake (the rest is the target's and stays for the relay). VIA_MORE: all of
 * them did and the reply is still incomplete; VIA_SEND: *out_len bytes in out go
 * next; otherwise the outcome (h->rep, h->why, h->bnd).
 */
enum via_res via_hs_feed(struct via_hs *h, const uint8_t *p, size_t len, size_t *used, uint8_t *out,
                         size_t *out_len);
/*
 * Has a SOCKS5 parent been asked for the target, its authentication done? Waiting past
 * that is the target's slowness, not the parent's. (HTTP and SOCKS4 ask in their first
 * message: no telling a slow parent from a slow target.)
 */
bool via_hs_asked_target(const struct via_hs *h);

#endif
