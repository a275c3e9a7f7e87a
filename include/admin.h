/*
 * admin.h - the admin HTTP endpoint: GET /metrics, GET /healthz,
 * POST /reload, POST /drain. Control thread only. HTTP/1.1 subset: one
 * request per connection (Connection: close), request line and headers at
 * most 8 KiB, bodies ignored.
 *
 * It is a part of the control thread's poll loop, not a call that waits:
 * admin_poll_prepare() adds the listener and every client to the loop's
 * pollfds and shortens its timeout to the nearest client deadline;
 * admin_poll_done() does what poll() found ready, without ever waiting.
 *
 * There is no authentication, so what a web browser on the host could make
 * it do is refused: requests whose Host names something DNS could rebind to
 * 127.0.0.1, whose Origin or Sec-Fetch-Site says another site sent them, and
 * POSTs with the form and text content types a page may send cross-origin
 * without a CORS preflight.
 */
#ifndef RINGSOCKS_ADMIN_H
#define RINGSOCKS_ADMIN_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* From accept until the whole request head is in. */
#define ADMIN_READ_TIMEOUT_MS  1000
/* From the answer being ready until it is written and the client has closed. */
#define ADMIN_WRITE_TIMEOUT_MS 5000
/*
 * Connections held at once. One more evicts the oldest client still sending
 * its head (then the oldest lingering, then the oldest being written to), so
 * a new request never waits behind slow ones.
 */
#define ADMIN_MAX_CLIENTS      64
/* pollfds admin_poll_prepare() may write: the listener and every client. */
#define ADMIN_POLL_MAX         (1 + ADMIN_MAX_CLIENTS)

#define ADMIN_METHOD_MAX 16
#define ADMIN_PATH_MAX   256

struct admin;
struct admin_request;

/* What a handler of admin_handlers.other answers. */
struct admin_reply {
    int status;
    char *body; /* malloc'ed, or NULL for an empty body */
    size_t len;
    const char *ctype; /* static; NULL: application/json */
    const char *allow; /* static; for 405 */
};

/*
 * Called on the control thread, inside admin_poll_done(), with arg. A NULL
 * handler makes its path answer 404.
 */
struct admin_handlers {
    void *arg;
    /*
     * GET /metrics: body into *buf (malloc'ed, the admin frees it); returns its
     * length. *buf left NULL: 500.
     */
    size_t (*metrics)(void *arg, char **buf);
    /*
     * POST /reload: 0 done (200, with the report in msg, or "reloaded" when
     * msg is left empty), else the error text in msg (500). msg starts empty.
     */
    int (*reload)(void *arg, char *msg, size_t cap);
    /* POST /drain: start draining (202). */
    void (*drain)(void *arg);
    /* GET /healthz: 0 healthy (200 "ok"), else 503 with msg (e.g. "draining"). */
    int (*health)(void *arg, char *msg, size_t cap);
    /*
     * Any other request: fills *out (status 0, body NULL on entry). Status 0
     * left: 404. A body is malloc'ed (the admin frees it); ctype NULL means
     * application/json; allow names the methods a 405 answer lists.
     */
    void (*other)(void *arg, const struct admin_request *rq, struct admin_reply *out);
};

/*
 * Bind and listen on addr, AF_INET or AF_INET6 (IPV6_V6ONLY set), with
 * SO_REUSEADDR, non-blocking, and keep one spare fd so that a full fd table
 * still gets an answer. hosts: the host names (comma-separated, as
 * admin_hosts_add() builds them; NULL or "" for none) a request's Host may
 * carry besides IP literals and localhost; copied. NULL and a message naming
 * the address and the failed step in err on failure.
 */
struct admin *admin_open(const struct sockaddr *addr, const char *hosts, char *err, size_t errlen);
/* The listening fd (its address: getsockname()). */
int admin_fd(const struct admin *a);
/*
 * Before the control thread's poll(): write the listener and every client
 * into pfd (room for ADMIN_POLL_MAX, revents cleared; an entry with fd -1 is
 * one poll() skips) and lower *timeout_ms to the nearest deadline. Returns
 * the number written, which admin_poll_done() takes back with pfd.
 */
unsigned admin_poll_prepare(struct admin *a, struct pollfd *pfd, int *timeout_ms);
/*
 * After that poll(): serve what it found ready (accept, read, answer with
 * the handlers, write), close the clients past their deadline. Never waits
 * on a socket; the handlers' own work is the only time it takes.
 */
void admin_poll_done(struct admin *a, const struct pollfd *pfd, unsigned n,
                     const struct admin_handlers *h);
/* Close the listening socket and every client, and free a; NULL is fine. */
void admin_close(struct admin *a);

/* ---- pure parts, for the tests */

/* A header field the checks look at: the first line's value, OWS trimmed. */
struct admin_field {
    const char *v; /* into the parsed buffer; NULL: absent */
    size_t len;
    unsigned n; /* field lines with this name */
};

struct admin_request {
    char method[ADMIN_METHOD_MAX];
    char path[ADMIN_PATH_MAX];  /* without query string and fragment */
    char query[ADMIN_PATH_MAX]; /* after '?', without the fragment; "" when none */
    struct admin_field host, origin, content_type, fetch_site;
};

/*
 * Parse a request head from buf[0..len). Returns the head's length when it
 * is complete ("\r\n\r\n" seen), 0 when more is needed, -1 when it is
 * malformed, over 8 KiB, or its method or path is longer than the fields of
 * rq. Field values point into buf.
 */
int admin_parse_request(const char *buf, size_t len, struct admin_request *rq);
/*
 * May this request be served? 0 yes; else the status to answer (400 a Host,
 * Origin, Content-Type or Sec-Fetch-Site line repeated; 403 Host, Origin or
 * Sec-Fetch-Site refused; 415 a POST with a form or text content type) with
 * a one-line reason ending in "\n" in *why. hosts as for admin_open().
 */
int admin_check_request(const struct admin_request *rq, const char *hosts, const char **why);
/*
 * A Host value DNS rebinding cannot produce: an IPv4 literal, an [IPv6]
 * literal, localhost, or one of hosts (ASCII case ignored), each with or
 * without ":port".
 */
bool admin_host_allowed(const char *v, size_t len, const char *hosts);
/* origin (an Origin value) is "http://" and the same host and port as host (a Host value). */
bool admin_origin_same(const char *origin, size_t olen, const char *host, size_t hlen);
/*
 * The media type of a Content-Type value is one a browser sends cross-origin
 * without a preflight (Fetch "CORS-safelisted request-header"): form
 * (application/x-www-form-urlencoded, multipart/form-data) or text/plain,
 * ASCII case ignored, parameters and whitespace allowed (RFC 9110 8.3.1).
 */
bool admin_ctype_is_simple(const char *v, size_t len);
/* 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104: only this host can connect. */
bool admin_addr_is_loopback(const struct sockaddr *sa);
/*
 * Append name to list (cap bytes with the NUL; "a,b" form) in its normal form
 * after checking it is a host name as hostname.h defines one (no port, no
 * all-digit last label). 0, -EINVAL (not a host name) or -ENOSPC.
 */
int admin_hosts_add(char *list, size_t cap, const char *name);

#endif
