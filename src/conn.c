/*
 * conn.c - connection slots of a shard: generations, in-flight counts,
 * timer lists, the one close path, and the routing of every event of a
 * connection to the phase it is in (conn.h).
 *
 * Shard thread only. A slot is freed (fds closed, generation bumped) only
 * when no operation of it is in flight, so no completion, linked SQE or
 * cancellation can ever act on an fd number that was reused. It must never
 * name a phase: it calls up only through c->phase.
 */
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "acl.h"
#include "acct.h"
#include "fault_types.h"
#include "gssw.h"
#include "limit_types.h"
#include "log.h"
#include "policy.h"
#include "ring.h"
#include "shard_types.h"
#include "transparent.h"
#include "users.h"
#include "via.h"

_Static_assert(DIR_C2T == STAT_UP && DIR_T2C == STAT_DOWN, "stats count bytes by direction");

/* Seconds a closing connection may wait for its ops before they are cancelled. */
#define CLOSE_CANCEL_S 2

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
conn_alloc(struct shard *sh, const struct conn_phase *phase)
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
    c->slot = slot;
    c->phase = phase;
    c->state = CONN_HANDSHAKE;
    c->rep = -1;
    c->rule = CONN_RULE_NONE;
    c->cfd = c->tfd = c->xfd = -1;
    c->tprev = c->tnext = CONN_NIL;
    for (int d = 0; d < 2; d++) {
        c->dir[d].pipe_r = c->dir[d].pipe_w = -1;
        c->dir[d].sprev = c->dir[d].snext = CONN_NIL;
    }
    STAT_INC(sh->n_open);
    return c;
}

struct io_uring_sqe *
conn_sqe(struct shard *sh, struct conn *c, unsigned op, unsigned arg)
{
    struct io_uring_sqe *sqe = ring_sqe(&sh->ring, &sh->st);
    io_uring_sqe_set_data64(sqe, conn_ud(c, op, arg));
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
    uint32_t slot = c->slot;
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
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CANCEL, 0);
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

/* A timer list's own reason, when the phase has nothing to do but close. */
static enum conn_end
tl_reason(enum tlist_id tl)
{
    switch (tl) {
    case TL_IDLE:
        return END_IDLE_TIMEOUT;
    case TL_BIND:
        return END_BIND_TIMEOUT;
    default:
        return END_HS_TIMEOUT;
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
                cancel_fd(sh, c, c->xfd);
                tl_append(sh, c, TL_CLOSING, sh->now_ds);
            } else if (c->phase->on_timeout) {
                c->phase->on_timeout(sh, c, (enum tlist_id)tl);
            } else {
                conn_close(sh, c, tl_reason((enum tlist_id)tl));
            }
        }
    }
}

struct conn *
conn_timer_first(struct shard *sh, enum tlist_id tl)
{
    return sh->head[tl] != CONN_NIL ? &sh->conns[sh->head[tl]] : NULL;
}

struct conn *
conn_timer_next(struct shard *sh, const struct conn *c)
{
    return c->tnext != CONN_NIL ? &sh->conns[c->tnext] : NULL;
}

bool
conn_session(const struct conn *c, struct egress_session *s)
{
    memset(s, 0, sizeof(*s));
    if (!(c->flags & CONN_F_SESSION) || !c->user)
        return false;
    const char *id = c->user + strlen(c->user) + 1;
    s->id = id;
    s->id_len = strlen(id);
    s->ttl_s = (unsigned)strtoul(id + s->id_len + 1, NULL, 10);
    return s->id_len > 0;
}

/*
 * The log's rule field: the deciding rule's name, or its number as the docs
 * count rules (from 1). A reload since the decision renumbers the rules, so
 * then the name is not looked up and the number is the one it had.
 */
static void
conn_rule_text(const struct shard *sh, const struct conn *c, char *out, size_t cap)
{
    const char *name = NULL;
    out[0] = '\0';
    if (c->rule == CONN_RULE_DEFAULT) {
        snprintf(out, cap, "default");
        return;
    }
    if (c->rule < 0)
        return;
    if (sh->pol && (uint32_t)sh->pol->gen == c->rule_gen)
        name = acl_rule_name(sh->pol->acl, c->rule);
    if (name)
        snprintf(out, cap, "%s", name);
    else
        snprintf(out, cap, "%d", c->rule + 1);
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
    r.slot = c->slot;
    r.gen = c->gen;
    r.port = c->port;
    r.version = c->version;
    r.gss = c->gss;
    r.cmd = c->cmd;
    r.rep = c->rep;
    r.end = c->end;
    r.client = c->client;
    r.via = c->via;
    r.resolved = c->dest;
    r.egress = c->src;
    memset(&r.parent, 0, sizeof(r.parent));
    if (c->parent)
        r.parent = *via_parent_addr(c->parent);
    struct egress_session sess;
    r.session[0] = '\0';
    if (conn_session(c, &sess))
        snprintf(r.session, sizeof(r.session), "%.*s", (int)sess.id_len, sess.id);
    r.bytes_up = c->dir[DIR_C2T].bytes;
    r.bytes_down = c->dir[DIR_T2C].bytes;
    memset(&r.udp, 0, sizeof(r.udp));
    conn_rule_text(sh, c, r.rule, sizeof(r.rule));
    r.fault[0] = '\0';
    if (c->fault) {
        struct fault_set acted = c->fault->f;
        acted.kinds = c->fault->acted;
        fault_format(&acted, r.fault, sizeof(r.fault));
    }
    if (c->phase && c->phase->log_fill)
        c->phase->log_fill(c, &r);
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

/* The places a tunnel held in its user's and client address's counts (limit.h) go back. */
static void
limits_release(struct conn *c)
{
    if (c->acct) {
        lim_open_put(&c->acct->n);
        c->acct = NULL;
    }
    if (c->lim) {
        if (c->lim->client)
            lim_open_put(c->lim->client);
        free(c->lim);
        c->lim = NULL;
    }
}

static void
conn_free(struct shard *sh, struct conn *c)
{
    tl_unlink(sh, c);
    /* Before release: the phase adds what it holds (a UDP association's counts). */
    if (sh->lg)
        conn_log(sh, c);
    if (c->phase && c->phase->release)
        c->phase->release(sh, c);
    limits_release(c);
    for (int w = 0; w < CLIENT__COUNT; w++)
        conn_client_put(sh, c, (enum client_count)w);
    if (c->cfd >= 0)
        close(c->cfd);
    if (c->tfd >= 0)
        close(c->tfd);
    if (c->xfd >= 0)
        close(c->xfd);
    c->cfd = c->tfd = c->xfd = -1;
    unsigned cmd = c->cmd < STAT_CMDS ? c->cmd : 0;
    unsigned rep = c->rep >= 0 && c->rep < STAT_REPS - 1 ? (unsigned)c->rep : STAT_REPS - 1;
    STAT_INC(sh->st.replies[cmd][rep]);
    if (c->flags & CONN_F_OPEN_COUNTED)
        STAT_DEC(sh->st.open_by_cmd[cmd]);
    free(c->host);
    free(c->user);
    c->host = c->user = NULL;
    if (c->fault) {
        free(c->fault->held[0]);
        free(c->fault->held[1]);
        free(c->fault);
        c->fault = NULL;
    }
    via_parent_put(c->parent);
    c->parent = NULL;
    STAT_INC(sh->st.ended[c->end]);
    STAT_ADD(sh->st.bytes[DIR_C2T], c->dir[DIR_C2T].bytes);
    STAT_ADD(sh->st.bytes[DIR_T2C], c->dir[DIR_T2C].bytes);
    c->state = CONN_FREE;
    c->phase = NULL;
    c->gen++;
    sh->free_slots[sh->n_free++] = c->slot;
    STAT_DEC(sh->n_open);
    /* Accepting may resume and paused peers may be woken: the shard does both once per
     * batch of completions (shard.c), not once per slot. */
    sh->room_freed = true;
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
void
conn_abort_fd(int fd)
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
    /* write_timeout: a FIN would queue behind the bytes the peer does not take, and
     * the kernel would keep the orphaned socket and its buffers while it probes. */
    bool abort = why == END_CLIENT_ERR || why == END_TARGET_ERR || why == END_WRITE_TIMEOUT;
    if (abort) {
        conn_abort_fd(c->cfd);
        conn_abort_fd(c->tfd);
        conn_abort_fd(c->xfd);
    } else if (c->version == TRANSPARENT_VERSION && why != END_DONE && why != END_CLIENT_EOF) {
        /* A transparent client has no reply to be told a failure in: a FIN would make a
         * tunnel cut short (a timeout, a revocation, a drain) look like a complete one. */
        conn_abort_fd(c->cfd);
    }
    if (c->inflight == 0) {
        conn_free(sh, c);
        return;
    }
    /* A fault's sleep (fault.h) is on no socket: shutdown() would not wake it. */
    for (unsigned arg = 0; c->fault && arg < 2; arg++) {
        if (c->fault->timers & FAULT_TIMER(arg)) {
            struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CANCEL, 0);
            io_uring_prep_cancel64(sqe, conn_ud(c, OP_FAULT, arg), 0);
        }
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
    if (c->xfd >= 0)
        shutdown(c->xfd, SHUT_RDWR);
    tl_append(sh, c, TL_CLOSING, sh->now_ds);
}

unsigned
conn_policy_changed(struct shard *sh)
{
    const struct policy *p = sh->pol;
    unsigned revoked = 0;
    if (!p->close_removed_users && !p->close_denied)
        return 0;
    for (uint32_t i = 0; i < sh->high; i++) {
        struct conn *c = &sh->conns[i];
        if (c->state != CONN_RELAY && c->state != CONN_UDP)
            continue;
        /* UDP datagrams meet the new rules one by one; a TCP tunnel is judged here, by its
         * address, or by its name alone when a parent resolved it (chain.h). */
        bool tcp = c->state == CONN_RELAY && (c->dest.sa.sa_family || (c->parent && c->host));
        /* A GSS-API principal is no user of the file: the KDC, not a reload, vouches. */
        if ((p->close_removed_users && c->user && !c->gss && !users_hash(p->users, c->user)) ||
            (p->close_denied && tcp &&
             !conn_allowed(sh, c, c->dest.sa.sa_family ? &c->dest : NULL, c->host, c->port,
                           NULL))) {
            conn_close(sh, c, END_REVOKED);
            revoked++;
        }
    }
    return revoked;
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

    if (slot >= sh->high || sh->conns[slot].gen != ud_gen(ud) ||
        sh->conns[slot].state == CONN_FREE) {
        STAT_INC(sh->st.stale_cqes);
        return;
    }
    struct conn *c = &sh->conns[slot];
    c->inflight--;
    STAT_DEC(sh->st.inflight);

    switch (ud_op(ud)) {
    case OP_CANCEL:
        break;
    case OP_HUP:
        c->flags &= (uint8_t)~CONN_F_HUP_ARMED;
        if (c->state != CONN_CLOSING && cqe->res >= 0 && c->phase->on_hangup)
            c->phase->on_hangup(sh, c, cqe->res);
        break;
    default:
        c->phase->on_cqe(sh, c, cqe);
        break;
    }
    if (c->state == CONN_CLOSING && c->inflight == 0)
        conn_free(sh, c);
}

struct conn *
conn_from_ref(struct shard *sh, uint64_t ref)
{
    uint32_t slot = ud_slot(ref);
    if (slot >= sh->high)
        return NULL;
    struct conn *c = &sh->conns[slot];
    if (c->gen != ud_gen(ref) || c->state == CONN_FREE || c->state == CONN_CLOSING)
        return NULL;
    return c;
}

void
conn_resolved(struct shard *sh, uint64_t ref, int err, const union sockaddr_inx *addrs, unsigned n)
{
    struct conn *c = conn_from_ref(sh, ref);
    if (c && c->phase->on_resolved)
        c->phase->on_resolved(sh, c, conn_ref_tag(ref), err, addrs, n);
}

void
conn_authed(struct shard *sh, uint64_t ref, bool ok)
{
    struct conn *c = conn_from_ref(sh, ref);
    if (c && c->phase->on_auth)
        c->phase->on_auth(sh, c, conn_ref_tag(ref), ok);
}

bool
conn_gss(struct shard *sh, uint64_t ref, struct gssw_job *j)
{
    struct conn *c = conn_from_ref(sh, ref);
    if (!c || !c->phase->on_gss)
        return false;
    c->phase->on_gss(sh, c, j);
    return true;
}

int
conn_local(struct conn *c, union sockaddr_inx *local)
{
    if (c->local.sa.sa_family == AF_UNSPEC) {
        socklen_t len = sizeof(c->local);
        if (getsockname(c->cfd, &c->local.sa, &len) == -1) {
            int err = -errno;
            memset(&c->local, 0, sizeof(c->local));
            memset(local, 0, sizeof(*local));
            return err;
        }
        addr_unmap(&c->local);
    }
    *local = c->local;
    return 0;
}

void
conn_watch_hangup(struct shard *sh, struct conn *c)
{
    if (c->flags & CONN_F_HUP_ARMED)
        return;
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_HUP, 0);
    io_uring_prep_poll_add(sqe, c->cfd, POLLRDHUP);
    c->flags |= CONN_F_HUP_ARMED;
}

bool
conn_client_left(const struct conn *c, int events)
{
    if (events & (POLLERR | POLLHUP))
        return true;
    /* Its FIN after bytes still unread is a half-close after pipelined data, not a leave. */
    int unread = 0;
    return ioctl(c->cfd, FIONREAD, &unread) == 0 && unread == 0;
}

bool
conn_client_take(struct shard *sh, struct conn *c, enum client_count what, unsigned limit)
{
    if (limit && clients_get(&sh->clients, &c->client, what) >= limit)
        return false;
    if (clients_inc(&sh->clients, &c->client, what, sh->now_s) > 0)
        c->flags |= CONN_F_CLIENT(what);
    return true;
}

void
conn_client_put(struct shard *sh, struct conn *c, enum client_count what)
{
    if (!(c->flags & CONN_F_CLIENT(what)))
        return;
    clients_dec(&sh->clients, &c->client, what, sh->now_s);
    c->flags &= (uint8_t)~CONN_F_CLIENT(what);
}

bool
conn_allowed(struct shard *sh, struct conn *c, const union sockaddr_inx *dest, const char *host,
             uint16_t port, int *rule)
{
    struct policy_req r = {
        .client = &c->client,
        .cmd = c->cmd,
        .user = c->user,
        .dest = dest,
        .host = host,
        .port = port,
        .gss = c->gss,
    };
    int dummy, decided;
    bool ok = policy_decide(sh->pol, sh->o, &r, rule ? rule : &dummy, &decided);
    if (rule) {
        c->rule = decided;
        c->rule_gen = (uint32_t)sh->pol->gen;
    }
    if (ok)
        return true;
    STAT_INC(sh->st.acl_denied);
    return false;
}
