/*
 * admin.h - the admin HTTP endpoint: GET /metrics, GET /healthz,
 * POST /reload, POST /drain. Control thread only. HTTP/1.1 subset: one
 * request per connection (Connection: close), request line and headers at
 * most 8 KiB, bodies ignored; every client gets at most ADMIN_IO_TIMEOUT_MS
 * so a stuck one cannot hold the control thread.
 */
#ifndef RINGSOCKS_ADMIN_H
#define RINGSOCKS_ADMIN_H

#include <stddef.h>
#include <sys/socket.h>

#define ADMIN_IO_TIMEOUT_MS 1000

struct admin;

/*
 * Called on the control thread, inside admin_serve(), with arg. A NULL
 * handler makes its path answer 404.
 */
struct admin_handlers {
    void *arg;
    /*
     * GET /metrics: body into *buf (malloc'ed, the admin frees it); returns its
     * length. *buf left NULL: 500.
     */
    size_t (*metrics)(void *arg, char **buf);
    /* POST /reload: 0 done (200), else the error text in msg (500). msg starts empty. */
    int (*reload)(void *arg, char *msg, size_t cap);
    /* POST /drain: start draining (202). */
    void (*drain)(void *arg);
    /* GET /healthz: 0 healthy (200 "ok"), else 503 with msg (e.g. "draining"). */
    int (*health)(void *arg, char *msg, size_t cap);
};

/*
 * Bind and listen on addr, AF_INET or AF_INET6 (IPV6_V6ONLY set), with
 * SO_REUSEADDR, non-blocking. NULL and a message naming the address and the
 * failed step in err on failure.
 */
struct admin *admin_open(const struct sockaddr *addr, char *err, size_t errlen);
/* The listening fd, for the control thread's poll(). */
int admin_fd(const struct admin *a);
/*
 * Accept the pending connections (up to 16 at a time: the rest stay queued
 * and keep admin_fd() readable) and answer each, side by side. Returns when
 * all are done, at most about ADMIN_IO_TIMEOUT_MS (plus the handlers' own
 * time) after it was called; a client still silent or unread then is closed.
 * Every connection is closed before it returns.
 */
void admin_serve(struct admin *a, const struct admin_handlers *h);
/* Close the listening socket and free a; NULL is fine. */
void admin_close(struct admin *a);

/*
 * Pure: parse a request head from buf[0..len). Returns the head's length
 * when it is complete ("\r\n\r\n" seen), 0 when more is needed, -1 when it
 * is malformed or over 8 KiB. method and path get NUL-terminated copies
 * (the path without the query string).
 */
int admin_parse_request(const char *buf, size_t len, char *method, size_t mcap, char *path,
                        size_t pcap);

#endif
