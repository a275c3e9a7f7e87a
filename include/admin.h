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
 * It listens on TCP, on a Unix socket, or both (one struct admin each). With
 * a token set (admin_set_token()), every request but GET /healthz must carry
 * "Authorization: Bearer TOKEN", else 401; the token's digest is all it
 * keeps, compared in constant time. Without one, only loopback and the
 * socket's file mode guard it (main.c refuses a wider address). Either way,
 * what a web browser on the host could make it do is refused: requests whose
 * Host names something DNS could rebind to 127.0.0.1, whose Origin or
 * Sec-Fetch-Site says another site sent them, and POSTs with the form and
 * text content types a page may send cross-origin without a CORS preflight.
 */
#ifndef RINGSOCKS_ADMIN_H
#define RINGSOCKS_ADMIN_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

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

/* The bearer token: its file's one line, visible ASCII, this many bytes. */
#define ADMIN_TOKEN_MIN    16
#define ADMIN_TOKEN_MAX    4096
#define ADMIN_TOKEN_DIGEST 32 /* crypto_generichash_BYTES */

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
/*
 * The same on a Unix socket at path (absolute, shorter than sun_path): a
 * socket file left there is removed first (anything else, or a socket some
 * process still answers on, is an error), the new one is made with mode
 * (umask 0177 until chmod, so it is never wider), and owned by uid:gid when
 * chown is set (root, before the privilege drop). admin_close() removes it.
 */
struct admin *admin_open_unix(const char *path, unsigned mode, bool chown, uid_t uid, gid_t gid,
                              const char *hosts, char *err, size_t errlen);
/*
 * An admin endpoint on fd, a listening socket received from the process this
 * one upgrades (upgrade.h): bound and listening already. path: the Unix
 * socket's file (removed at admin_close() while it is still that file), or
 * NULL for TCP. hosts as for admin_open(). NULL with the reason in err (fd
 * is then still the caller's).
 */
struct admin *admin_adopt(int fd, const char *path, const char *hosts, char *err, size_t errlen);
/* The process that takes over serves on it: admin_close() leaves the socket's file be. */
void admin_keep_path(struct admin *a);
/*
 * From now on require the token whose digest (admin_token_digest()) is
 * given, or none when digest is NULL. Copied.
 */
void admin_set_token(struct admin *a, const unsigned char *digest);
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
    struct admin_field host, origin, content_type, fetch_site, authorization;
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
/*
 * May this request go on, given the token digest (NULL: no token)? 0 yes;
 * else 401 with a one-line reason in *why, the same whether the
 * Authorization line is missing, of another scheme or holds a wrong token
 * (which one is not told). GET /healthz never needs it (load balancers);
 * an Authorization line repeated is refused by admin_check_request().
 */
int admin_check_auth(const struct admin_request *rq, const unsigned char *digest, const char **why);
/*
 * An Authorization value "Bearer TOKEN" (scheme in any case, RFC 9110
 * 11.1; one or more spaces; TOKEN the b64token of RFC 6750 2.1): true and
 * the token in *tok, *tlen; false for anything else.
 */
bool admin_bearer(const char *v, size_t len, const char **tok, size_t *tlen);
/* The digest the token is kept and compared as (BLAKE2b, crypto_generichash). */
void admin_token_digest(const char *tok, size_t len, unsigned char digest[ADMIN_TOKEN_DIGEST]);
/*
 * Is tok the token of digest? Hashes tok and compares the digests with
 * sodium_memcmp(): the time depends on tok's length only, never on how much
 * of the token it matches or on the token's length.
 */
bool admin_token_ok(const unsigned char digest[ADMIN_TOKEN_DIGEST], const char *tok, size_t len);
/*
 * Read the token file at path: a regular file no group or other may read or
 * write (like ssh keys), one line of ADMIN_TOKEN_MIN..ADMIN_TOKEN_MAX
 * visible ASCII bytes, one trailing newline allowed. Its digest into digest;
 * 0, or -errno with a message naming path (and the mode when that is the
 * fault) in err, never the token.
 */
int admin_token_read(const char *path, unsigned char digest[ADMIN_TOKEN_DIGEST], char *err,
                     size_t errlen);
/*
 * The same for a client: the token itself into tok (cap bytes, NUL-ended);
 * its length or -errno with err.
 */
int admin_token_load(const char *path, char *tok, size_t cap, char *err, size_t errlen);
/*
 * An address (of the admin setting) that must not listen without a token:
 * IPv4 or IPv6 beyond loopback. AF_UNSPEC (off) needs none.
 */
bool admin_needs_token(const struct sockaddr *sa);
/* 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104: only this host can connect. */
bool admin_addr_is_loopback(const struct sockaddr *sa);
/*
 * Append name to list (cap bytes with the NUL; "a,b" form) in its normal form
 * after checking it is a host name as hostname.h defines one (no port, no
 * all-digit last label). 0, -EINVAL (not a host name) or -ENOSPC.
 */
int admin_hosts_add(char *list, size_t cap, const char *name);

#endif
