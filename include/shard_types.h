/*
 * shard_types.h - the structures a shard owns: the shard itself, its
 * connection slots and handshake contexts, and the user_data encoding of its
 * ring operations. Every field is read and written by the owning shard
 * thread alone, except the block marked "written by other threads".
 */
#ifndef RINGSOCKS_SHARD_TYPES_H
#define RINGSOCKS_SHARD_TYPES_H

#include <ares.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "opts.h"
#include "auth.h"
#include "clients.h"
#include "socks4.h"
#include "socks5.h"
#include "udq.h"

/*
 * user_data of every SQE: op in bits 0-7 (bit 7: relay direction), slot in
 * bits 8-31, generation in bits 32-63. A completion whose generation no
 * longer matches its slot is stale and dropped.
 */
enum op {
    OP_NONE = 0,
    OP_ACCEPT,     /* slot: listener index */
    OP_TICK,       /* the shard's periodic timer */
    OP_WAKE,       /* read on the shard's eventfd: another thread wants attention */
    OP_DNS_POLL,   /* slot: DNS socket index, gen: its generation */
    OP_DNS_REMOVE, /* poll removal for a DNS socket c-ares closed */
    OP_HS_READ,    /* handshake bytes from the client */
    OP_HS_WRITE,   /* handshake replies to the client */
    OP_CONNECT,    /* outgoing connect */
    OP_LEFTOVER,   /* pipelined client bytes to the target */
    OP_CANCEL,     /* cancellation issued by the close path */
    OP_POLL_IN,    /* relay: source readable */
    OP_POLL_OUT,   /* relay: destination writable */
    OP_RECV,       /* relay: source socket -> provided buffer */
    OP_SEND,       /* relay: buffer -> destination socket */
    OP_AUTH,       /* read on the auth worker's eventfd: results are ready */
    OP_BIND_ACCEPT, /* BIND: the one inbound connection */
    OP_UDP_POLL,   /* UDP ASSOCIATE: datagrams wait on the association's socket */
    OP_UDP_CTRL,   /* UDP ASSOCIATE: read on the TCP control connection */
    OP_HUP,        /* POLLRDHUP on the client while the server waits on something else */
};
#define OP_DIR_BIT 0x80u

static inline uint64_t
ud_make(unsigned op, uint32_t slot, uint32_t gen)
{
    return (uint64_t)gen << 32 | (uint64_t)(slot & 0xFFFFFFu) << 8 | (op & 0xFFu);
}
static inline unsigned
ud_op(uint64_t ud)
{
    return (unsigned)(ud & 0x7Fu);
}
static inline unsigned
ud_dir(uint64_t ud)
{
    return (ud & OP_DIR_BIT) ? 1 : 0;
}
static inline uint32_t
ud_slot(uint64_t ud)
{
    return (uint32_t)(ud >> 8) & 0xFFFFFFu;
}
static inline uint32_t
ud_gen(uint64_t ud)
{
    return (uint32_t)(ud >> 32);
}

#define CONN_NIL UINT32_MAX

enum conn_state {
    CONN_FREE = 0,
    CONN_HANDSHAKE, /* reading greeting and request */
    CONN_RESOLVE,   /* waiting for DNS */
    CONN_CONNECT,   /* outgoing connect in flight */
    CONN_REPLY,     /* success reply and pipelined bytes being written */
    CONN_BIND_WAIT, /* BIND: first reply sent, waiting for the inbound connection */
    CONN_RELAY,
    CONN_UDP,       /* UDP ASSOCIATE: relaying datagrams while the TCP connection lives */
    CONN_CLOSING, /* waiting for in-flight operations before the slot is freed */
};

/* Why a connection ended: one reason each; conn_end_str() names them. */
enum conn_end {
    END_NONE = 0,
    END_DONE,          /* both directions finished */
    END_CLIENT_EOF,    /* client left during the handshake */
    END_CLIENT_ERR,    /* client socket error */
    END_TARGET_ERR,    /* target socket error */
    END_PROTOCOL,      /* malformed handshake */
    END_REPLY_ERR,     /* an error reply was sent */
    END_HS_TIMEOUT,    /* handshake timeout */
    END_IDLE_TIMEOUT,  /* relay or UDP association idle timeout */
    END_WRITE_TIMEOUT, /* relay: bytes waited write_timeout for a destination that took none */
    END_RESOURCE,      /* out of slots, fds, pipes or memory */
    END_AUTH_FAILED,   /* RFC 1929 credentials refused */
    END_DENIED,        /* refused by the access rules */
    END_REVOKED,       /* closed on reload: user removed or rule now denies */
    END_BIND_TIMEOUT,  /* BIND: nobody connected in time */
    END_SHUTDOWN,      /* server stopping */
    END_BAD_NAME,      /* the request named a host no host name can be */
    END_CLIENT_LIMIT,  /* a per-client-address limit (handshakes, BINDs, UDP associations) */
    END__COUNT,
};

/* Timer lists: a connection is on at most one, ordered by stamp. */
enum tlist_id {
    TL_NONE = 0,
    TL_HANDSHAKE,
    TL_CONNECT,
    TL_IDLE,
    TL_BIND,    /* BIND waiting for its inbound connection */
    TL_CLOSING, /* closing, operations still out: cancel them if shutdown did not */
    TL__COUNT,
};

enum {
    DIR_C2T = 0, /* client -> target */
    DIR_T2C = 1, /* target -> client */
};

/* Relay direction flags. */
#define RD_EOF       0x01u /* source said EOF */
#define RD_DONE      0x02u /* EOF forwarded as shutdown(SHUT_WR) */
#define RD_POLLOUT   0x04u /* destination full: wait for POLLOUT before writing */
#define RD_FULL      0x08u /* readable: the poll said so (splice: or the last read filled the pipe) */
#define RD_HOLD_BUF  0x10u /* copy: holds provided buffer bid */
#define RD_STARVED   0x20u /* copy: queued for a provided buffer */
#define RD_SPLICE    0x40u /* this direction relays with splice (else copy) */
#define RD_SMALL_PIPE 0x80u /* splice: the pipe kept its default size (F_SETPIPE_SZ refused) */
#define RD_WAIT_DATA 0x100u /* copy: no buffer, and no data known: a poll before the next recv */
#define RD_SPILLED   0x200u /* copy: the pending bytes are in the direction's own memory (spill) */
#define RD_STALLED   0x400u /* on the shard's write-stall list: pending bytes wait for POLLOUT */

struct relay_dir {
    int pipe_r, pipe_w; /* splice: pipe from the pool, -1 when none */
    uint32_t pending;   /* bytes read but not yet written (in the pipe, buffer or spill) */
    uint32_t off;       /* copy: bytes of the buffer (or spill) already sent */
    uint16_t bid;       /* copy: provided buffer id while RD_HOLD_BUF */
    uint8_t ops;        /* operations in flight for this direction */
    uint16_t flags;     /* RD_* */
    uint64_t bytes; /* forwarded to the destination */
    uint8_t *spill; /* copy, RD_SPILLED: off + pending bytes of our own, freed when drained */
    /* Write-stall list (RD_STALLED): node slot << 1 | dir, oldest stamp first. */
    uint32_t sprev, snext;
    uint32_t stall_ds; /* shard deciseconds: since then no pending byte was written */
};

struct hs;        /* handshake context, see below */
struct udp_assoc; /* udp.c */

/* conn.flags */
#define CONN_F_OPEN_COUNTED 0x01u /* counted in open_by_cmd */
#define CONN_F_HUP_ARMED    0x02u /* the hang-up watch (OP_HUP) is in flight */
#define CONN_F_CL_HS        0x04u /* counted in the client table: CLIENT_HS */
#define CONN_F_CL_BIND      0x08u /* CLIENT_BIND */
#define CONN_F_CL_UDP       0x10u /* CLIENT_UDP */

struct conn {
    uint32_t gen;
    uint16_t inflight; /* SQEs whose CQE has not arrived */
    uint8_t state;     /* enum conn_state */
    uint8_t end;       /* enum conn_end */
    uint8_t tlist;     /* enum tlist_id */
    uint8_t hs_flags;  /* HSF_* while in the handshake */
    uint8_t flags;     /* CONN_F_* */
    uint8_t version;   /* 4 or 5, 0 before the first byte */
    uint8_t cmd;       /* SOCKS5_CMD_*, 0 before the request */
    int8_t rep;        /* reply code sent (SOCKS5 numbering), -1 none */
    uint16_t port;     /* requested destination port */
    int cfd, tfd;
    uint32_t tprev, tnext; /* timer list links (slot numbers) */
    uint32_t stamp_ds;     /* timer list key: when it was queued, in shard deciseconds */
    uint32_t active_ds;    /* last relay progress, in shard deciseconds */
    uint64_t start_ms;     /* wall clock at accept, for the access log */
    struct hs *hs;
    struct udp_assoc *ua; /* UDP ASSOCIATE state, else NULL */
    char *host;           /* requested name (allocated), or NULL for an address */
    char *user;           /* authenticated user (allocated), or NULL */
    union sockaddr_inx client;
    union sockaddr_inx dest; /* the target reached (or tried), the BIND peer; family 0: none */
    struct relay_dir dir[2];
};

/* The longest client message is an RFC 1929 auth, 513 bytes; SOCKS4a with
 * a 255-byte user-id and host is 520. */
#define HS_IN_SIZE  1024
#define HS_OUT_SIZE 64
#define HS_MAX_ADDRS 8

/* Handshake context flags. */
#define HSF_WRITING      0x01u /* a write to the client is in flight */
#define HSF_CLOSE_AFTER  0x02u /* close once the replies are written */
#define HSF_REPLIED      0x04u /* the final reply is queued */
#define HSF_LEFTOVER     0x08u /* pipelined bytes being written to the target */
#define HSF_DNS          0x10u /* a DNS query is out */
#define HSF_TIMED_OUT    0x20u /* the connect deadline passed */
#define HSF_AUTH_WAIT    0x40u /* the credential check is on the auth worker */

/*
 * One per connection in the handshake, from the shard's slab: the input and
 * output areas are inside the ring's registered buffer.
 */
struct hs {
    uint8_t in[HS_IN_SIZE];
    uint8_t out[HS_OUT_SIZE];
    uint16_t in_len, in_off;
    uint8_t out_len, out_off;
    uint8_t n_addrs, next_addr;
    uint8_t version; /* 4 or 5 once the first byte is seen, 0 before */
    uint8_t cmd;     /* SOCKS5_CMD_* for both versions */
    int last_err;    /* -errno of the last failed attempt */
    uint32_t next_free;
    union {
        struct socks5 s5;
        struct socks4 s4;
    } p;
    struct auth_cred cred;
    union sockaddr_inx addrs[HS_MAX_ADDRS];
};

struct listener {
    int fd;
    bool armed;
};

/*
 * Per-shard counters: written by the shard alone (STAT_INC/STAT_ADD: a plain
 * relaxed store, no locked instruction), read by the control thread with
 * relaxed atomic loads and summed.
 */
#define STAT_ADD(x, n) __atomic_store_n(&(x), (x) + (n), __ATOMIC_RELAXED)
#define STAT_INC(x)    STAT_ADD(x, 1)
#define STAT_DEC(x)    STAT_ADD(x, -1)
#define STAT_GET(x)    __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* DNS lookup latency histogram bounds, microseconds (then +Inf). */
#define DNS_LAT_BOUNDS_US {1000, 2000, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000}
#define DNS_LAT_BUCKETS 13

/* Replies by command (0: no request, 1 CONNECT, 2 BIND, 3 UDP) and code (SOCKS5
 * numbering 0..8; 9: the connection ended with no reply). */
#define STAT_CMDS 4
#define STAT_REPS 10

struct shard_stats {
    uint64_t accepted;
    uint64_t accept_dropped; /* closed at once: no slot */
    uint64_t accept_pauses;  /* EMFILE/ENFILE/ENOMEM on accept */
    uint64_t tunnels;        /* relays started */
    uint64_t ended[END__COUNT];
    uint64_t bytes[2];
    uint64_t stale_cqes;
    uint64_t pipe_fallbacks; /* splice chunks copied: no pipe could be had */
    uint64_t pipe_small;     /* pipes the kernel would not enlarge to pipe_size */
    uint64_t splice_switches; /* relay auto: directions that moved on to splice */
    uint64_t spills;          /* copy: blocked sends whose bytes moved out of a shared buffer */
    int64_t spilled_bytes;    /* gauge: bytes held in spills now */
    uint64_t hs_waits;        /* connections that waited for a free handshake context */
    uint64_t client_evictions; /* slow handshakes of a heavy address closed for another's */
    uint64_t client_limited;  /* BINDs and UDP associations refused by a per-client limit */
    uint64_t auth_coalesced;  /* password checks answered by an identical one in flight */
    uint64_t close_cancels;  /* closes that needed an explicit cancel */
    uint64_t auth_cache_hits;
    uint64_t auth_slow_checks;
    uint64_t auth_failures;
    uint64_t auth_overload;  /* checks closed without a verdict: no memory for a job */
    uint64_t auth_deferred;  /* checks queued behind the others: address over its failure budget */
    uint64_t auth_abandoned; /* connections that ended while their check waited */
    uint64_t auth_cancelled; /* checks dropped before crypt(3): nobody waited any more */
    uint64_t udp_dropped;   /* datagrams dropped: malformed, FRAG, foreign source */
    uint64_t dns_queries;   /* sent to DNS */
    uint64_t dns_cache_hits;
    uint64_t dns_lat[DNS_LAT_BUCKETS]; /* not cumulative: one bucket per answer */
    uint64_t dns_lat_sum_us;
    uint64_t replies[STAT_CMDS][STAT_REPS]; /* tunnels ended, by command and reply */
    int64_t open_by_cmd[STAT_CMDS];         /* gauge: relaying now, by command */
    int64_t inflight;                       /* gauge: SQEs whose CQE has not come */
    uint64_t acl_denied;                    /* requests refused by the rules */
    uint64_t loops;
};

struct pipe_pool {
    int (*fds)[2];
    unsigned n, cap;
    unsigned size; /* bytes per pipe */
};

#define DNS_MAX_SOCKS 32

struct dns_sock {
    int fd; /* -1: free */
    uint32_t gen;
    bool want_r, want_w;
    bool armed;    /* a poll is in flight */
    bool removing; /* c-ares closed it; waiting for the poll to go */
    unsigned armed_mask;
};

struct hosts; /* read-only hosts table shared by every shard */
struct dns_cache; /* dns.c: the shard's answers, by name */
struct users; /* read-only user table shared by every shard */
struct authq; /* authq.c: the shard's credential cache, queues and crypt worker */
struct policy; /* policy.h: rules, users, limits; RCU-published by the control thread */
struct logger; /* log.c: the access-log writer */
struct udp_scratch; /* udp.c: the shard's datagram buffers */

struct shard {
    unsigned id;
    struct io_uring ring;
    const struct opts *o;
    const struct hosts *hosts;
    struct policy **ppol;      /* the control thread's published pointer */
    const struct policy *pol;  /* this loop iteration's snapshot: never keep it longer */
    uint64_t pol_gen;          /* generation the connections were last checked against */
    struct logger *lg;
    struct authq *authq;
    pthread_t thread;
    bool fixed_bufs; /* handshake I/O with READ_FIXED/WRITE_FIXED */

    struct listener *ls;
    unsigned n_ls;
    bool accept_paused;

    struct conn *conns;
    uint32_t n_slots, high;
    struct shard *peers; /* every shard (this one too), for n_open and want_room only */
    unsigned n_peers;
    /* fds accepted while all shards held max_conns (the accept was in flight
     * when another shard took the last place): served first when room frees. */
    struct udq held;
    uint32_t *free_slots;
    uint32_t n_free;

    /* What each client address holds on this shard (per-client caps, auth fairness). */
    struct clients clients;

    struct hs *hs_slab;
    uint32_t hs_count, hs_free;
    /* Accepted connections waiting for a handshake context: ud_make(0, slot, gen); those
     * of addresses holding more than client_max_handshakes wait in the second queue. */
    struct udq hs_wait, hs_wait_heavy;

    /* copy engine: provided buffer ring */
    struct io_uring_buf_ring *br;
    uint8_t *bufs;
    unsigned br_mask;
    uint32_t bufs_held; /* buffers the kernel handed to a recv and that are not back yet */
    struct udq starved; /* directions waiting for a buffer: ud_make(0, slot, gen) | dir */
    /* Relay directions whose pending bytes wait for a full destination, either engine,
     * by the time they last wrote (struct relay_dir sprev/snext); write_timeout. */
    uint32_t stall_head, stall_tail;

    struct pipe_pool pipes;
    struct udp_scratch *udp; /* mapped at the first UDP association, else NULL */

    ares_channel dns;
    struct dns_sock dns_socks[DNS_MAX_SOCKS];
    struct dns_cache *dns_cache;

    uint32_t head[TL__COUNT], tail[TL__COUNT];
    uint32_t now_s;
    uint32_t now_ds; /* CLOCK_MONOTONIC_COARSE, deciseconds: connection timers (13 years wrap-free) */
    uint64_t now_ms; /* CLOCK_MONOTONIC_COARSE, ms */
    struct __kernel_timespec tick;

    int wake_fd;
    uint64_t wake_val;
    bool stopping;
    bool draining;

    struct shard_stats st;

    /* Written by this shard, read by the others on each accept and close:
     * a cache line of their own, away from the fields only this shard uses. */
    _Alignas(64) uint32_t n_open;
    atomic_bool want_room; /* paused by max_conns: a close on another shard wakes us */

    /* written by other threads */
    _Alignas(64) atomic_bool stop;   /* close everything now */
    atomic_bool drain;               /* stop accepting, let tunnels finish */
    _Atomic uint64_t drain_deadline_ms; /* CLOCK_MONOTONIC ms: then close the rest */
    /* written by the shard, read by the control thread */
    atomic_bool exited;              /* the loop has ended */
    _Atomic uint64_t pol_seen;       /* the policy generation its tunnels were checked against */
};

#endif
