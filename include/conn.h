/*
 * conn.h - a shard's connection slots: allocation, generations, in-flight
 * counts, timer lists, the one close path, and the phase a connection is in.
 *
 * The slot layer never names a phase. A connection is always in one phase
 * (handshake, request, BIND, relay, UDP association, ...); the phase's table
 * (struct conn_phase) receives the completions of the ops it issued, its
 * timer's expiry, DNS and password-check answers, a watched client's
 * hang-up, and frees what it holds when the slot is freed. Everything
 * that answers a connection later (DNS, the auth worker, a wait queue)
 * names it with a conn_ref, which the slot layer checks once.
 *
 * Shard thread only.
 */
#ifndef RINGSOCKS_CONN_H
#define RINGSOCKS_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "egress.h"
#include "clients.h"
#include "conn_end.h"
#include "relay_types.h"
#include "ud.h"

struct shard;
struct conn;
struct io_uring_cqe;
struct io_uring_sqe;
struct hs;         /* handshake_types.h */
struct udp_assoc;  /* udp.c */
struct log_rec;    /* log.h */
struct uacct;      /* acct.h */
struct conn_lim;   /* limit.c */
struct via_parent; /* via.h */
struct gssw_job;   /* gssw.h */
struct conn_fault; /* fault_types.h */

#define CONN_NIL UINT32_MAX

enum conn_state {
    CONN_FREE = 0,
    CONN_HANDSHAKE, /* handshake phase: reading greeting and request */
    CONN_RESOLVE,   /* request phase: waiting for DNS */
    CONN_CONNECT,   /* request phase: outgoing connect in flight */
    CONN_REPLY,     /* handshake phase: success reply and pipelined bytes being written */
    CONN_BIND_WAIT, /* BIND phase: first reply sent, waiting for the inbound connection */
    CONN_RELAY,     /* relay phase */
    CONN_UDP,       /* UDP phase: relaying datagrams while the TCP connection lives */
    CONN_CLOSING,   /* waiting for in-flight operations before the slot is freed */
};

/* Timer lists: a connection is on at most one, ordered by stamp; each list has one timeout. */
enum tlist_id {
    TL_NONE = 0,
    TL_HANDSHAKE, /* handshake_timeout */
    TL_CONNECT,   /* connect_timeout: resolving and connecting, a datagram's name */
    TL_IDLE,      /* idle_timeout: requeued by the last activity (active_ds) */
    TL_BIND,      /* bind_timeout */
    TL_CLOSING,   /* closing, operations still out: cancel them if shutdown did not */
    TL__COUNT,
};

/*
 * What a phase does with its connection's events. Only on_cqe is required.
 * Each is called with the connection live (generation checked), and on_cqe
 * also while it is closing (CONN_CLOSING), so that the phase can account
 * for what the op held (a buffer, an accepted fd).
 */
struct conn_phase {
    const char *name;
    /* A completion of an op the phase issued (the op is ud_op(cqe->user_data)). */
    void (*on_cqe)(struct shard *sh, struct conn *c, const struct io_uring_cqe *cqe);
    /* Its timer list expired; NULL: close with the list's reason. */
    void (*on_timeout)(struct shard *sh, struct conn *c, enum tlist_id tl);
    /* A name it asked dns_resolve() for: err 0 and n >= 1 addresses, or -errno. */
    void (*on_resolved)(struct shard *sh, struct conn *c, unsigned tag, int err,
                        const union sockaddr_inx *addrs, unsigned n);
    /* The auth worker's verdict on the credential it asked authq_check() about. */
    void (*on_auth)(struct shard *sh, struct conn *c, unsigned tag, bool ok);
    /* The GSS-API worker's answer to a job it was given (gssw.h): the phase owns j now. */
    void (*on_gss)(struct shard *sh, struct conn *c, struct gssw_job *j);
    /* The client hung up while conn_watch_hangup() watched it (events: POLL*). */
    void (*on_hangup)(struct shard *sh, struct conn *c, int events);
    /* The slot is being freed (ops all done): give back what the phase holds. */
    void (*release)(struct shard *sh, struct conn *c);
    /* Before release: add the phase's own fields to the connection's access-log record. */
    void (*log_fill)(const struct conn *c, struct log_rec *r);
};

/* conn.rule when no rule index decided: none did (no rules, never asked), or none matched. */
#define CONN_RULE_NONE    (-1)
#define CONN_RULE_DEFAULT (-2)

/* conn.flags */
#define CONN_F_OPEN_COUNTED 0x01u /* counted in open_by_cmd */
#define CONN_F_HUP_ARMED    0x02u /* the hang-up watch (OP_HUP) is in flight */
/* 0x04 << what: counted in the shard's client table under enum client_count what. */
#define CONN_F_CLIENT(what) ((uint8_t)(0x04u << (what)))
#define CONN_F_SESSION      0x40u /* c->user is "base\0id\0ttl" (outbound.h) */
#define CONN_F_ADMITTED     0x80u /* limit_admit() passed: c->acct and c->lim hold its places */

struct conn {
    uint32_t gen;
    uint32_t slot;
    const struct conn_phase *phase;
    uint16_t inflight; /* SQEs whose CQE has not arrived */
    uint8_t state;     /* enum conn_state */
    uint8_t end;       /* enum conn_end */
    uint8_t tlist;     /* enum tlist_id */
    uint8_t hs_flags;  /* HSF_* (handshake_types.h), also after the context is given back */
    uint8_t flags;     /* CONN_F_* */
    uint8_t version;   /* 4 or 5, 0 before the first byte */
    uint8_t cmd;       /* SOCKS5_CMD_*, 0 before the request */
    int8_t rep;        /* reply code sent (SOCKS5 numbering), -1 none */
    uint8_t gss;       /* GSS-API (gsshs.h): 0 not used, else the protection level agreed + 1 */
    uint16_t port;     /* requested destination port */
    int cfd, tfd;
    int xfd; /* a second outgoing socket while two connect attempts race (request.c), or -1 */
    uint32_t tprev, tnext;    /* timer list links (slot numbers) */
    uint32_t stamp_ds;        /* timer list key: when it was queued, in shard deciseconds */
    uint32_t active_ds;       /* last relay progress, in shard deciseconds */
    uint64_t start_ms;        /* wall clock at accept, for the access log */
    int32_t rule;             /* the rule that decided the request, or CONN_RULE_* (access log) */
    uint32_t rule_gen;        /* the policy generation rule indexes (its name is looked up there) */
    struct hs *hs;            /* handshake context while the connection holds one */
    struct udp_assoc *ua;     /* UDP ASSOCIATE state, else NULL */
    char *host;               /* requested name (allocated), or NULL for an address */
    char *user;               /* authenticated user (allocated), or NULL; after a refused login
                 * (end END_AUTH_FAILED, END_AUTH_LOCKED) the name tried, for the log
                 * alone: such a connection is closing and never served */
    struct uacct *acct;       /* the user's running state (acct.h): bytes counted as they go */
    struct conn_lim *lim;     /* limits held or applied (lim.h, limit.c), or NULL: none */
    struct conn_fault *fault; /* faults it asked for or commits (fault.h), or NULL: none */
    /* The parent proxy that carried the tunnel (chain.h), with a reference on its list
     * held until the slot is freed, for the access log; NULL: direct. */
    const struct via_parent *parent;
    union sockaddr_inx client; /* behind a PROXY header, the client the header names */
    union sockaddr_inx via;    /* the load balancer that sent the PROXY header; family 0: none */
    union sockaddr_inx dest;   /* the target reached (or tried), the BIND peer; family 0: none */
    union sockaddr_inx src;    /* our end towards the target (egress address); family 0: none */
    /* Where the client reached us (conn_local()): family 0 until first asked. */
    union sockaddr_inx local;
    struct relay_dir dir[2];
};

/*
 * The session c's user name named (username_params; the user string is then
 * "base\0id\0ttl", CONN_F_SESSION), or false.
 */
bool conn_session(const struct conn *c, struct egress_session *s);

int conn_table_init(struct shard *sh, uint32_t n_slots);
void conn_table_fini(struct shard *sh);

/* A fresh slot in CONN_HANDSHAKE under phase, with no fds, or NULL when all are taken. */
struct conn *conn_alloc(struct shard *sh, const struct conn_phase *phase);

/* Move c to another phase: from now on its events go there. */
static inline void
conn_enter(struct conn *c, const struct conn_phase *phase)
{
    c->phase = phase;
}

/* An SQE for c tagged with op (and its one-bit argument): counted in c->inflight. */
struct io_uring_sqe *conn_sqe(struct shard *sh, struct conn *c, unsigned op, unsigned arg);

/* user_data of c's op, for cancelling it by user_data. */
static inline uint64_t
conn_ud(const struct conn *c, unsigned op, unsigned arg)
{
    return ud_make(op, arg, c->slot, c->gen);
}

/*
 * End the connection: shut its sockets down (cfd, tfd, xfd), cancel what is
 * in flight, and free the slot (closing each fd once) when the last
 * completion arrives.
 * Idempotent: the first reason wins.
 */
void conn_close(struct shard *sh, struct conn *c, enum conn_end why);

/* Reset fd's connection now (an RST, the socket CLOSED, every op on it woken); -1 is ignored. */
void conn_abort_fd(int fd);

/* Route one CQE carrying a connection op (ud_op() >= OP_CONN_FIRST) to its phase. */
void conn_dispatch(struct shard *sh, const struct io_uring_cqe *cqe);

/* Put c on timer list tl (removing it from any other), stamped now. */
void conn_timer_set(struct shard *sh, struct conn *c, enum tlist_id tl);
/* Expire what is due on every list. */
void conn_timers_run(struct shard *sh);
/* Timer-list walks, oldest first: the first connection on tl, the next after c (NULL: end). */
struct conn *conn_timer_first(struct shard *sh, enum tlist_id tl);
struct conn *conn_timer_next(struct shard *sh, const struct conn *c);

/*
 * A connection as something answering it later names it: slot, generation
 * and a tag the phase chooses, in 64 bits (a queue entry, a DNS query's
 * cookie). conn_from_ref() gives the connection back only if it is the same
 * one and not closing, else NULL.
 */
static inline uint64_t
conn_ref(const struct conn *c, unsigned tag)
{
    return (uint64_t)c->gen << 32 | (uint64_t)(c->slot & 0xFFFFFFu) << 8 | (tag & 0xFFu);
}
static inline unsigned
conn_ref_tag(uint64_t ref)
{
    return (unsigned)(ref & 0xFFu);
}
struct conn *conn_from_ref(struct shard *sh, uint64_t ref);

/* DNS answered a query made with ref: to the phase's on_resolved. */
void conn_resolved(struct shard *sh, uint64_t ref, int err, const union sockaddr_inx *addrs,
                   unsigned n);
/* The auth worker answered a check made with ref: to the phase's on_auth. */
void conn_authed(struct shard *sh, uint64_t ref, bool ok);

/* The GSS-API worker answered job j for the connection ref names: to the phase's on_gss
 * (true: the phase owns j), or false when the connection is gone or its phase takes none
 * (the caller frees j). */
bool conn_gss(struct shard *sh, uint64_t ref, struct gssw_job *j);

/*
 * The address the client reached: c->cfd's own address (getsockname, unmapped) the first
 * time, kept in c->local for the next. A connection whose client socket is not its client's
 * (a GSS-API protected tunnel: a socketpair, gssw.h) has it set before the switch. Returns
 * 0, or -errno with *local zeroed.
 */
int conn_local(struct conn *c, union sockaddr_inx *local);

/*
 * Watch c's client for a hang-up while the server waits on something else:
 * one POLLRDHUP poll (pipelined bytes do not fire it), left in flight when
 * the wait ends; it completes at the client's FIN or at close and goes to
 * the phase's on_hangup.
 */
void conn_watch_hangup(struct shard *sh, struct conn *c);
/* The watch fired with events: did the client go, leaving no byte unread in its socket? */
bool conn_client_left(const struct conn *c, int events);

/*
 * Per-client counts (clients.h) held by c, given back when the slot is freed.
 * take: false when c's address already holds limit (0: no limit); a count the
 * table cannot keep is taken as room (a limit that cannot count does not
 * refuse). put: give one back early.
 */
bool conn_client_take(struct shard *sh, struct conn *c, enum client_count what, unsigned limit);
void conn_client_put(struct shard *sh, struct conn *c, enum client_count what);

/*
 * May c reach dest (NULL: not known yet) for host:port under the current
 * rules (policy_allows())? Counts a denial. *rule (may be NULL) gets the
 * admitting rule's index (-1: none), for its flags and settings. With rule
 * given the question is c's own request (not a datagram's or a reload's
 * re-check): the deciding rule is kept in c->rule for the access log.
 */
bool conn_allowed(struct shard *sh, struct conn *c, const union sockaddr_inx *dest,
                  const char *host, uint16_t port, int *rule);

/*
 * A new policy snapshot is in sh->pol: close the tunnels of users it no
 * longer has and, when configured, those its rules now deny. Returns how
 * many it closed.
 */
unsigned conn_policy_changed(struct shard *sh);

/* Close every connection (server stopping). */
void conn_close_all(struct shard *sh, enum conn_end why);

#endif
