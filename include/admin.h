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

struct admin_handlers {
    void *arg;
    /* GET /metrics: body into *buf (malloc'ed, the admin frees it); returns its length. */
    size_t (*metrics)(void *arg, char **buf);
    /* POST /reload: 0 done (200), else the error text in msg (500). */
    int (*reload)(void *arg, char *msg, size_t cap);
    /* POST /drain: start draining (202). */
    void (*drain)(void *arg);
    /* GET /healthz: 0 healthy (200 "ok"), else 503 with msg (e.g. "draining"). */
    int (*health)(void *arg, char *msg, size_t cap);
};

/* Bind and listen on addr (non-blocking). NULL and a message in err on failure. */
struct admin *admin_open(const struct sockaddr *addr, char *err, size_t errlen);
/* The listening fd, for the control thread's poll(). */
int admin_fd(const struct admin *a);
/* Accept every pending connection and answer it. */
void admin_serve(struct admin *a, const struct admin_handlers *h);
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
