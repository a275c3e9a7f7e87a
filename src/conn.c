/*
 * conn.c - connection slots of a shard: generations, in-flight counts,
 * timer lists, completion dispatch and the one close path.
 *
 * Shard thread only. A slot is freed (fds closed, generation bumped) only
 * when no operation of it is in flight, so no completion, linked SQE or
 * cancellation can ever act on an fd number that was reused.
 */
#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "relay.h"
#include "session.h"
#include "policy.h"
#include "shard.h"
#include "udp.h"
#include "users.h"

/* Seconds a closing connection may wait for its ops before they are cancelled. */
#define CLOSE_CANCEL_S 2

static const char *const end_names[END__COUNT] = {
    [END_NONE] = "none",
    [END_DONE] = "done",
    [END_CLIENT_EOF] = "client_eof",
    [END_CLIENT_ERR] = "client_error",
    [END_TARGET_ERR] = "target_error",
    [END_PROTOCOL] = "protocol_error",
    [END_REPLY_ERR] = "error_reply",
    [END_HS_TIMEOUT] = "handshake_timeout",
    [END_IDLE_TIMEOUT] = "idle_timeout",
    [END_WRITE_TIMEOUT] = "write_timeout",
    [END_RESOURCE] = "resource_limit",
    [END_AUTH_FAILED] = "auth_failed",
    [END_DENIED] = "denied",
    [END_REVOKED] = "revoked",
    [END_BIND_TIMEOUT] = "bind_timeout",
    [END_SHUTDOWN] = "shutdown",
    [END_BAD_NAME] = "bad_name",
    [END_CLIENT_LIMIT] = "client_limit",
};

const char *
conn_end_str(enum conn_end why)
{
    return (unsigned)why < END__COUNT ? end_names[why] : "unknown";
}

int
conn_table_init(struct shard *sh, uint32_t n_slots)
{
    /*
     * Reserved, not touched: pages are faulted in as slots are first used,
     * and freed slots are reused most-recent first, so an idle server costs
     * almost nothing however large max_conns is.
     */
    size_t bytes = (size_t)n_slots * sizeof(struct conn);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    sh->conns = p;
    sh->free_slots = malloc((size_t)n_slots * sizeof(uint32_t));
    if (!sh->free_slots) {
        munmap(p, bytes);
        sh->conns = NULL;
        return -ENOMEM;
    }
    sh->n_slots = n_slots;
    sh->high = 0;
    sh->n_free = 0;
    sh->n_open = 0;
    for (int i = 0; i < TL__COUNT; i++)
        sh->head[i] = sh->tail[i] = CONN_NIL;
    sh->stall_head = sh->stall_tail = CONN_NIL;
    return 0;
}

void
conn_table_fini(struct shard *sh)
{
    if (sh->conns)
        munmap(sh->conns, (size_t)sh->n_slots * sizeof(struct conn));
    free(sh->free_slots);
    sh->conns = NULL;
    sh->free_slots = NULL;
}

struct conn *
conn_alloc(struct shard *sh)
{
    uint32_t slot;
    if (sh->n_free)
        slot = sh->free_slots[--sh->n_free];
    else if (sh->high < sh->n_slots)
        slot = sh->high++;
    else
        return NULL;

    struct conn *c = &sh->conns[slot];
    uint32_t gen = c->gen;
    memset(c, 0, sizeof(*c));
    c->gen = gen;
    c->state = CONN_HANDSHAKE;
    c->rep = -1;
    c->cfd = c->tfd = -1;
    c->tprev = c->tnext = CONN_NIL;
    for (int d = 0; d < 2; d++) {
        c->dir[d].pipe_r = c->dir[d].pipe_w = -1;
        c->dir[d].sprev = c->dir[d].snext = CONN_NIL;
    }
    STAT_INC(sh->n_open);
    return c;
}

struct io_uring_sqe *
conn_sqe(struct shard *sh, struct conn *c, unsigned op)
{
    struct io_uring_sqe *sqe = shard_sqe(sh);
    io_uring_sqe_set_data64(sqe, ud_make(op, conn_slot(sh, c), c->gen));
    c->inflight++;
    STAT_INC(sh->st.inflight);
    return sqe;
}

/* Timer lists: doubly linked through slot numbers, oldest stamp first. */
static void
tl_unlink(struct shard *sh, struct conn *c)
{
    if (c->tlist == TL_NONE)
        return;
    if (c->tprev != CONN_NIL)
        sh->conns[c->tprev].tnext = c->tnext;
    else
        sh->head[c->tlist] = c->tnext;
    if (c->tnext != CONN_NIL)
        sh->conns[c->tnext].tprev = c->tprev;
    else
        sh->tail[c->tlist] = c->tprev;
    c->tprev = c->tnext = CONN_NIL;
    c->tlist = TL_NONE;
}

static void
tl_append(struct shard *sh, struct conn *c, enum tlist_id tl, uint32_t stamp)
{
    uint32_t slot = conn_slot(sh, c);
    c->tlist = (uint8_t)tl;
    c->stamp_ds = stamp;
    c->tnext = CONN_NIL;
    c->tprev = sh->tail[tl];
    if (sh->tail[tl] != CONN_NIL)
        sh->conns[sh->tail[tl]].tnext = slot;
    else
        sh->head[tl] = slot;
    sh->tail[tl] = slot;
}

void
conn_timer_set(struct shard *sh, struct conn *c, enum tlist_id tl)
{
    tl_unlink(sh, c);
    if (tl != TL_NONE)
        tl_append(sh, c, tl, sh->now_ds);
    c->active_ds = sh->now_ds;
}

/*
 * The write-stall list: relay directions whose pending bytes wait for their
 * destination, a node per direction (slot << 1 | dir) so that each has its
 * own stamp. Every append is stamped now and the clock never goes back, so
 * the list stays ordered and expiry looks only at the head: exact to the
 * 100 ms of the stamps, O(1) per event, whatever write_timeout a reload sets.
 * (The idle list's lazy requeue by last activity would not keep it ordered.)
 */
static struct relay_dir *
stall_dir(struct shard *sh, uint32_t node)
{
    return &sh->conns[node >> 1].dir[node & 1];
}

static void
stall_unlink(struct shard *sh, struct conn *c, unsigned d)
{
    struct relay_dir *rd = &c->dir[d];
    if (!(rd->flags & RD_STALLED))
        return;
    if (rd->sprev != CONN_NIL)
        stall_dir(sh, rd->sprev)->snext = rd->snext;
    else
        sh->stall_head = rd->snext;
    if (rd->snext != CONN_NIL)
        stall_dir(sh, rd->snext)->sprev = rd->sprev;
    else
        sh->stall_tail = rd->sprev;
    rd->sprev = rd->snext = CONN_NIL;
    rd->flags &= (uint16_t)~RD_STALLED;
}

static void
stall_append(struct shard *sh, struct conn *c, unsigned d)
{
    struct relay_dir *rd = &c->dir[d];
    uint32_t node = conn_slot(sh, c) << 1 | d;
    rd->flags |= RD_STALLED;
    rd->stall_ds = sh->now_ds;
    rd->snext = CONN_NIL;
    rd->sprev = sh->stall_tail;
    if (sh->stall_tail != CONN_NIL)
        stall_dir(sh, sh->stall_tail)->snext = node;
    else
        sh->stall_head = node;
    sh->stall_tail = node;
}

void
conn_stall_wait(struct shard *sh, struct conn *c, unsigned d)
{
    if (!(c->dir[d].flags & RD_STALLED) && c->state == CONN_RELAY)
        stall_append(sh, c, d);
}

void
conn_stall_wrote(struct shard *sh, struct conn *c, unsigned d)
{
    struct relay_dir *rd = &c->dir[d];
    if (!(rd->flags & RD_STALLED))
        return;
    stall_unlink(sh, c, d);
    if (rd->pending)
        stall_append(sh, c, d);
}

/* Close the tunnels whose oldest waiting direction wrote nothing for write_timeout. */
static void
stall_expire(struct shard *sh)
{
    uint32_t to = (uint32_t)sh->pol->write_timeout_s * 10;
    if (to == 0)
        return;
    while (sh->stall_head != CONN_NIL) {
        struct conn *c = &sh->conns[sh->stall_head >> 1];
        /* "<=": both stamps are floored to 100 ms, so this never fires early. */
        if (sh->now_ds - stall_dir(sh, sh->stall_head)->stall_ds <= to)
            break;
        stall_unlink(sh, c, DIR_C2T);
        stall_unlink(sh, c, DIR_T2C);
        conn_close(sh, c, END_WRITE_TIMEOUT);
    }
}

/*
 * The slow path: cancel everything on fd. Cancelling by fd cannot use
 * io_uring's cancel hash (keyed by user_data) and walks every pending poll
 * of the ring, so it only runs for a connection that shutdown() did not
 * finish within CLOSE_CANCEL_S.
 */
static void
cancel_fd(struct shard *sh, struct conn *c, int fd)
{
    if (fd < 0)
        return;
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CANCEL);
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
}

/* A list's timeout in deciseconds (0: none). */
static uint32_t
tl_timeout(const struct shard *sh, enum tlist_id tl)
{
    switch (tl) {
    case TL_HANDSHAKE:
        return (uint32_t)sh->pol->handshake_timeout_s * 10;
    case TL_CONNECT:
        return (uint32_t)sh->pol->connect_timeout_s * 10;
    case TL_IDLE:
        return (uint32_t)sh->pol->idle_timeout_s * 10;
    case TL_BIND:
        return (uint32_t)sh->pol->bind_timeout_s * 10;
    case TL_CLOSING:
        return (uint32_t)CLOSE_CANCEL_S * 10;
    default:
        return 0;
    }
}

void
conn_timers_run(struct shard *sh)
{
    for (int tl = TL_HANDSHAKE; tl < TL__COUNT; tl++) {
        uint32_t to = tl_timeout(sh, tl);
        if (to == 0)
            continue;
        while (sh->head[tl] != CONN_NIL) {
            struct conn *c = &sh->conns[sh->head[tl]];
            /* "<=": both stamps are floored to 100 ms, so this never fires early. */
            if (sh->now_ds - c->stamp_ds <= to)
                break;
            if (tl == TL_IDLE && sh->now_ds - c->active_ds <= to) {
                /* Progress since it was queued: requeue by its last activity. */
                tl_unlink(sh, c);
                tl_append(sh, c, TL_IDLE, c->active_ds);
                continue;
            }
            tl_unlink(sh, c);
            if (tl == TL_CLOSING) {
                STAT_INC(sh->st.close_cancels);
                cancel_fd(sh, c, c->cfd);
                cancel_fd(sh, c, c->tfd);
                tl_append(sh, c, TL_CLOSING, sh->now_ds);
            } else if (tl == TL_CONNECT || tl == TL_BIND)
                session_connect_timeout(sh, c);
            else
                conn_close(sh, c, tl == TL_IDLE ? END_IDLE_TIMEOUT : END_HS_TIMEOUT);
        }
    }
    stall_expire(sh);
}

/* One access-log line per connection, handed to the writer thread. */
static void
conn_log(struct shard *sh, const struct conn *c)
{
    struct log_rec r;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    uint64_t now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;

    r.start_ms = c->start_ms;
    r.duration_ms = (uint32_t)(now_ms > c->start_ms ? now_ms - c->start_ms : 0);
    r.shard = (uint16_t)sh->id;
    r.port = c->port;
    r.version = c->version;
    r.cmd = c->cmd;
    r.rep = c->rep;
    r.end = c->end;
    r.client = c->client;
    r.resolved = c->dest;
    r.bytes_up = c->dir[DIR_C2T].bytes;
    r.bytes_down = c->dir[DIR_T2C].bytes;
    snprintf(r.user, sizeof(r.user), "%s", c->user ? c->user : "");
    r.host[0] = '\0';
    if (c->host) {
        snprintf(r.host, sizeof(r.host), "%s", c->host);
    } else if (c->dest.sa.sa_family && c->cmd) {
        /* The address asked for, without its port (the record has the port). */
        addr_format(&c->dest.sa, r.host, sizeof(r.host));
        char *colon = strrchr(r.host, ':');
        if (colon)
            *colon = '\0';
    }
    log_push(sh->lg, sh->id, &r);
}

static void
conn_free(struct shard *sh, struct conn *c)
{
    tl_unlink(sh, c);
    stall_unlink(sh, c, DIR_C2T);
    stall_unlink(sh, c, DIR_T2C);
    session_release(sh, c);
    relay_release(sh, c);
    udp_release(sh, c);
    if (c->cfd >= 0)
        close(c->cfd);
    if (c->tfd >= 0)
        close(c->tfd);
    c->cfd = c->tfd = -1;
    if (sh->lg)
        conn_log(sh, c);
    unsigned cmd = c->cmd < STAT_CMDS ? c->cmd : 0;
    unsigned rep = c->rep >= 0 && c->rep < STAT_REPS - 1 ? (unsigned)c->rep : STAT_REPS - 1;
    STAT_INC(sh->st.replies[cmd][rep]);
    if (c->flags & CONN_F_OPEN_COUNTED)
        STAT_DEC(sh->st.open_by_cmd[cmd]);
    free(c->host);
    free(c->user);
    c->host = c->user = NULL;
    STAT_INC(sh->st.ended[c->end]);
    STAT_ADD(sh->st.bytes[DIR_C2T], c->dir[DIR_C2T].bytes);
    STAT_ADD(sh->st.bytes[DIR_T2C], c->dir[DIR_T2C].bytes);
    c->state = CONN_FREE;
    c->gen++;
    sh->free_slots[sh->n_free++] = conn_slot(sh, c);
    STAT_DEC(sh->n_open);
    shard_accept_resume(sh);
    shard_room_freed(sh);
}

/*
 * A tunnel that failed on one side is aborted on the other with RST, not FIN,
 * as a transparent relay should pass a reset on. A FIN would also leave a
 * client that filled its window waiting on zero-window probes (exponential
 * backoff, up to two minutes) before it learns the tunnel is gone.
 * connect(AF_UNSPEC) is tcp_disconnect(): the RST goes out now, the socket is
 * CLOSED, and every op waiting on it wakes with an error. (SO_LINGER 0 would
 * send the RST only at close(), after the shutdown() that wakes the ops had
 * sent a FIN first: two packets for the peer to process instead of one.)
 * On a socket that is already closed, or a UDP socket, it changes nothing
 * that matters here.
 */
static void
abort_now(int fd)
{
    static const struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    if (fd >= 0)
        connect(fd, &unspec, sizeof(unspec));
}

void
conn_close(struct shard *sh, struct conn *c, enum conn_end why)
{
    if (c->state == CONN_CLOSING || c->state == CONN_FREE)
        return;
    c->state = CONN_CLOSING;
    c->end = (uint8_t)why;
    tl_unlink(sh, c);
    stall_unlink(sh, c, DIR_C2T);
    stall_unlink(sh, c, DIR_T2C);
    /* write_timeout: a FIN would queue behind the bytes the peer does not take, and
     * the kernel would keep the orphaned socket and its buffers while it probes. */
    bool abort = why == END_CLIENT_ERR || why == END_TARGET_ERR || why == END_WRITE_TIMEOUT;
    if (abort) {
        abort_now(c->cfd);
        abort_now(c->tfd);
    }
    if (c->inflight == 0) {
        conn_free(sh, c);
        return;
    }
    /*
     * shutdown() wakes everything that waits on a socket: polls see
     * POLLHUP, recvs return 0, sends and connects fail. The explicit
     * cancel is a fallback on the closing timer list. (On an aborted socket, already
     * CLOSED, shutdown() sends nothing and only wakes.)
     */
    if (c->cfd >= 0)
        shutdown(c->cfd, SHUT_RDWR);
    if (c->tfd >= 0)
        shutdown(c->tfd, SHUT_RDWR);
    tl_append(sh, c, TL_CLOSING, sh->now_ds);
}

void
conn_policy_changed(struct shard *sh)
{
    const struct policy *p = sh->pol;
    if (!p->close_removed_users && !p->close_denied)
        return;
    for (uint32_t i = 0; i < sh->high; i++) {
        struct conn *c = &sh->conns[i];
        if (c->state != CONN_RELAY && c->state != CONN_UDP)
            continue;
        if (p->close_removed_users && c->user && !users_hash(p->users, c->user)) {
            conn_close(sh, c, END_REVOKED);
            continue;
        }
        /* UDP datagrams meet the new rules one by one; a TCP tunnel is judged here. */
        if (p->close_denied && c->state == CONN_RELAY && c->dest.sa.sa_family &&
            !session_allowed(sh, c, &c->dest, c->host, c->port))
            conn_close(sh, c, END_REVOKED);
    }
}

void
conn_close_all(struct shard *sh, enum conn_end why)
{
    for (uint32_t i = 0; i < sh->high; i++) {
        struct conn *c = &sh->conns[i];
        if (c->state != CONN_FREE && c->state != CONN_CLOSING)
            conn_close(sh, c, why);
    }
}

void
conn_dispatch(struct shard *sh, const struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    uint32_t slot = ud_slot(ud);
    unsigned op = ud_op(ud);

    if (slot >= sh->high || sh->conns[slot].gen != ud_gen(ud) ||
        sh->conns[slot].state == CONN_FREE) {
        STAT_INC(sh->st.stale_cqes);
        return;
    }
    struct conn *c = &sh->conns[slot];
    c->inflight--;
    STAT_DEC(sh->st.inflight);

    switch (op) {
    case OP_CANCEL:
        break;
    case OP_HS_READ:
    case OP_HS_WRITE:
    case OP_CONNECT:
    case OP_LEFTOVER:
    case OP_BIND_ACCEPT:
        if (c->state != CONN_CLOSING)
            session_on_cqe(sh, c, op, cqe->res);
        else if (op == OP_BIND_ACCEPT && cqe->res >= 0)
            close(cqe->res); /* accepted while closing: nobody will use it */
        break;
    case OP_UDP_POLL:
    case OP_UDP_CTRL:
        udp_on_cqe(sh, c, op, cqe->res);
        break;
    case OP_HUP:
        if (c->state != CONN_CLOSING)
            session_on_hup(sh, c, cqe->res);
        break;
    default:
        relay_on_cqe(sh, c, op, ud_dir(ud), cqe->res, cqe->flags);
        break;
    }
    if (c->state == CONN_CLOSING && c->inflight == 0)
        conn_free(sh, c);
}
