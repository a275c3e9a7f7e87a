/*
 * gssw.c - each shard's GSS-API worker (gssw.h): one thread that makes every
 * GSS-API call for the shard's connections, and pumps their protected
 * tunnels (RFC 1961 section 5).
 *
 * Threads: the shard pushes jobs onto the request queue and bumps the
 * worker's eventfd (a write that never blocks); the worker answers on the
 * answer queue and bumps the shard's eventfd, which the shard reads through
 * its io_uring (OP_GSS). Both queues are intrusive Vyukov queues over
 * gssw_job.next: unbounded, lock-free, one producer and one consumer each.
 *
 * The worker waits in epoll_wait on its eventfd and on the sockets of its
 * tunnels (level-triggered; an fd is only watched for what the tunnel can
 * act on, so a tunnel that waits never spins). A tunnel is the client's
 * socket (cfd: mtyp-3 frames) and the worker's end of a socketpair (pfd:
 * plain bytes; the shard holds the other end as the connection's socket).
 * Everything inside a session and a tunnel belongs to the worker alone.
 */
#include "gssw.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "gssframe.h"
#include "ring.h"
#include "shard_types.h"
#include "ud.h"

/* Plain bytes wrapped into one message to the client: 16 KiB costs tens of microseconds of
 * gss_wrap (docs/design.md, "GSS-API: where the work runs"), so one busy tunnel never holds
 * the others for long. The wrapped token of a chunk fits OUT_TOKEN_CAP (gssacc_wrap_limit). */
#define CHUNK_MAX     16384
#define OUT_TOKEN_CAP (CHUNK_MAX + 1024)
/* A client's frame, header and token. */
#define IN_CAP        (GSSFRAME_HDR_LEN + GSSFRAME_DATA_TOKEN_MAX)
/* Messages each way per wake-up of one tunnel: level-triggered epoll brings it back. */
#define BUDGET        8
/* After the shard closed its end, the client has this long to take what is left. */
#define GONE_GRACE_S  30

_Static_assert(sizeof(struct gssw_stats) % sizeof(uint64_t) == 0,
               "gssw_stats_read() copies the counters as uint64_t");

struct gssw_sess {
    atomic_uint refs;         /* the shard's, the tunnel's (gssw.h) */
    struct gssacc_cred *cred; /* a reference of the session's own (gssacc_cred_ref) */
    struct gssacc_ctx *ctx;
    bool done;     /* the context is complete */
    uint8_t level; /* granted by the last GSSW_LEVEL */
    bool can_integ, can_conf;
};

/* An intrusive MPSC queue (Dmitry Vyukov's): push is wait-free, pop may see a push halfway
 * (then it answers empty; the producer's eventfd write that follows wakes the consumer). */
struct mpsc {
    _Alignas(64) struct gssw_job *head; /* producers: atomic exchange */
    _Alignas(64) struct gssw_job *tail; /* the consumer's */
    struct gssw_job stub;
};

struct tun {
    struct tun *prev, *next;
    struct gssw_sess *s;
    int cfd, pfd;
    bool conf;          /* level 2: every message encrypted, both ways */
    bool c_eof;         /* the client's EOF, at a frame boundary: pfd shut for writing */
    bool p_eof;         /* the shard's EOF on pfd */
    bool c_shut;        /* cfd shut for writing (after p_eof, out drained) */
    bool p_gone;        /* the shard closed its end (EPOLLHUP on pfd) */
    uint32_t gone_at_s; /* when p_gone was seen */
    uint32_t cmask, pmask;
    bool creg, preg; /* in the epoll set */
    bool dead;       /* ended: on the dead list until the batch of events is done */
    /* client -> pair: a frame being received, then its payload not yet written */
    uint8_t *in;
    size_t in_len;
    uint8_t *pend;
    size_t pend_off, pend_len;
    /* pair -> client: a wrapped message not yet written (header and token) */
    uint8_t *out;
    size_t out_off, out_len;
};

struct gssw {
    struct shard *sh;
    struct mpsc req, resp;
    int req_fd, resp_fd; /* eventfds: wake the worker, wake the shard */
    uint64_t resp_val;
    int ep;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    struct tun *tuns; /* the worker's */
    struct tun *dead; /* ended in this batch: freed after it (its events may follow) */
    unsigned n_gone;  /* tunnels with p_gone: the coarse timer runs */
    /* the worker's scratch, one tunnel at a time */
    uint8_t plain[GSSACC_TOKEN_MAX];
    uint8_t wrapped[GSSFRAME_HDR_LEN + OUT_TOKEN_CAP];
    struct gssw_stats st; /* written by the worker (relaxed stores), read by anyone */
};

/* --- the queues ------------------------------------------------------------ */

static void
mpsc_init(struct mpsc *q)
{
    q->stub.next = NULL;
    q->head = q->tail = &q->stub;
}

static void
mpsc_push(struct mpsc *q, struct gssw_job *j)
{
    __atomic_store_n(&j->next, NULL, __ATOMIC_RELAXED);
    struct gssw_job *prev = __atomic_exchange_n(&q->head, j, __ATOMIC_ACQ_REL);
    __atomic_store_n(&prev->next, j, __ATOMIC_RELEASE);
}

static struct gssw_job *
mpsc_pop(struct mpsc *q)
{
    struct gssw_job *tail = q->tail;
    struct gssw_job *next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);
    if (tail == &q->stub) {
        if (!next)
            return NULL;
        q->tail = tail = next;
        next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);
    }
    if (next) {
        q->tail = next;
        return tail;
    }
    if (tail != __atomic_load_n(&q->head, __ATOMIC_ACQUIRE))
        return NULL; /* a push is halfway: its eventfd write follows */
    mpsc_push(q, &q->stub);
    next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);
    if (next) {
        q->tail = next;
        return tail;
    }
    return NULL;
}

static void
bump(int fd)
{
    uint64_t one = 1;
    /* An eventfd write fails only when its counter would overflow: the reader is awake. */
    if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        perror("ringsocks: gss worker eventfd");
}

/* --- credentials, sessions, jobs (any thread) -------------------------------- */

struct gssw_sess *
gssw_sess_new(struct gssacc_cred *cred)
{
    struct gssw_sess *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (cred)
        gssacc_cred_ref(cred);
    s->cred = cred;
    atomic_init(&s->refs, 1);
    return s;
}

void
gssw_sess_ref(struct gssw_sess *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

/* Drop one reference (the worker's thread, or any once the worker is gone). */
static void
sess_free(struct gssw_sess *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    gssacc_free(s->ctx);
    gssacc_cred_free(s->cred);
    free(s);
}

/* A job whose in buffer holds in_cap bytes and out buffer out_cap (0, 0: none). */
static struct gssw_job *
job_alloc(struct gssw_sess *sess, uint8_t kind, uint64_t ref, size_t in_cap, size_t out_cap)
{
    /* The buffers are not zeroed: in_len and out_len say what is in them. */
    struct gssw_job *j = malloc(sizeof(*j) + in_cap + out_cap);
    if (!j)
        return NULL;
    memset(j, 0, sizeof(*j));
    j->ref = ref;
    j->sess = sess;
    j->kind = kind;
    j->cfd = j->pfd = -1;
    j->in = in_cap ? (uint8_t *)(j + 1) : NULL;
    j->out = out_cap ? j->in + in_cap : NULL;
    j->out_cap = (uint32_t)out_cap;
    return j;
}

struct gssw_job *
gssw_job_new(struct gssw_sess *sess, uint8_t kind, uint64_t ref)
{
    size_t cap = kind == GSSW_FREE ? 0 : GSSACC_TOKEN_MAX;
    return job_alloc(sess, kind, ref, cap, cap);
}

struct gssw_job *
gssw_job_new_dgram(struct gssw_sess *sess, uint8_t kind, uint64_t ref, size_t len)
{
    if (len > GSSACC_TOKEN_MAX)
        return NULL;
    /* A wrap adds a token header, a checksum and (confidentiality) padding: far below
     * GSSW_DGRAM_GROWTH for any Kerberos enctype. The frame's header goes in the in
     * buffer's last 4 bytes, so it holds at least 4. */
    size_t out = kind == GSSW_WRAP_DGRAM ? len + GSSW_DGRAM_GROWTH : len;
    return job_alloc(sess, kind, ref, len < 4 ? 4 : len, out);
}

void
gssw_sess_put(struct shard *sh, struct gssw_sess *s)
{
    struct gssw_job *j = s ? gssw_job_new(s, GSSW_FREE, 0) : NULL;
    if (j)
        gssw_submit(sh, j);
}

void
gssw_job_free(struct gssw_job *j)
{
    free(j);
}

/* --- the protection level (worker) ------------------------------------------- */

/* The level granted to a client asking for asked, or -1: see GSSW_LEVEL in gssw.h. */
static int
grant(uint8_t asked, uint8_t levels, bool can_integ, bool can_conf)
{
    unsigned allowed = levels & 7u;
    if (!can_integ)
        allowed &= ~((1u << GSSFRAME_LEVEL_INTEG) | (1u << GSSFRAME_LEVEL_CONF));
    if (!can_conf)
        allowed &= ~(1u << GSSFRAME_LEVEL_CONF);
    int want = asked == GSSFRAME_LEVEL_SELECTIVE ? GSSFRAME_LEVEL_CONF : asked;
    for (int l = want; l >= 0; l--)
        if (allowed & (1u << l))
            return l;
    for (int l = want + 1; l <= GSSFRAME_LEVEL_CONF; l++)
        if (allowed & (1u << l))
            return l;
    return -1;
}

static void
do_level(struct gssw *w, struct gssw_job *j)
{
    struct gssw_sess *s = j->sess;
    j->res = -EINVAL;
    j->out_len = 0;
    if (!s->done) {
        snprintf(j->err, sizeof(j->err), "protection level before the context was complete");
        goto refused;
    }
    if (j->nec) {
        if (j->in_len != 1) {
            snprintf(j->err, sizeof(j->err), "a bare protection level of %u octets", j->in_len);
            goto refused;
        }
        j->asked = j->in[0];
    } else {
        bool was_conf;
        ssize_t n = gssacc_unwrap(s->ctx, j->in, j->in_len, w->plain, sizeof(w->plain), &was_conf);
        if (n < 0) {
            j->res = (int)n;
            snprintf(j->err, sizeof(j->err), "protection level: gss_unwrap: %s", strerror((int)-n));
            goto refused;
        }
        if (n != 1) {
            snprintf(j->err, sizeof(j->err), "protection level message of %zd octets", n);
            goto refused;
        }
        j->asked = w->plain[0];
    }
    if (!gssframe_level_known(j->asked)) {
        snprintf(j->err, sizeof(j->err), "unknown protection level %u", j->asked);
        goto refused;
    }
    int lvl = grant(j->asked, j->levels, s->can_integ, s->can_conf);
    if (lvl < 0) {
        j->res = -EACCES;
        snprintf(j->err, sizeof(j->err),
                 "protection level %u asked, none of the allowed ones (mask 0x%x) possible",
                 j->asked, j->levels);
        goto refused;
    }
    uint8_t octet = (uint8_t)lvl;
    if (j->nec) {
        j->out[0] = octet;
        j->out_len = 1;
    } else {
        ssize_t n = gssacc_wrap(s->ctx, false, &octet, 1, j->out, GSSACC_TOKEN_MAX);
        if (n < 0) {
            j->res = (int)n;
            snprintf(j->err, sizeof(j->err), "protection level: gss_wrap: %s", strerror((int)-n));
            goto refused;
        }
        j->out_len = (uint32_t)n;
    }
    s->level = octet;
    j->res = lvl;
    STAT_INC(w->st.levels[lvl]);
    return;
refused:
    STAT_INC(w->st.level_refused);
}

static void
do_accept(struct gssw *w, struct gssw_job *j)
{
    struct gssw_sess *s = j->sess;
    j->out_len = 0;
    if (s->done) {
        j->res = -EINVAL;
        snprintf(j->err, sizeof(j->err), "a context token after the context was complete");
        STAT_INC(w->st.refused);
        return;
    }
    if (!s->ctx) {
        int r = s->cred ? gssacc_new(&s->ctx, s->cred) : -EINVAL;
        if (r < 0) {
            j->res = r;
            snprintf(j->err, sizeof(j->err), "gss context: %s", strerror(-r));
            STAT_INC(w->st.refused);
            return;
        }
    }
    size_t out_len = 0;
    int r = gssacc_accept(s->ctx, j->in, j->in_len, j->out, GSSACC_TOKEN_MAX, &out_len, j->err,
                          sizeof(j->err));
    j->res = r;
    if (r < 0) {
        gssacc_free(s->ctx);
        s->ctx = NULL;
        STAT_INC(w->st.refused);
        return;
    }
    j->out_len = (uint32_t)out_len;
    if (r == 1) {
        s->done = true;
        s->can_integ = j->can_integ = gssacc_can_integ(s->ctx);
        s->can_conf = j->can_conf = gssacc_can_conf(s->ctx);
        if (gssacc_client_name(s->ctx, j->strip_realm, j->name, sizeof(j->name)) < 0) {
            /* A name we cannot hold is no name to apply rules to. */
            j->res = -EMSGSIZE;
            snprintf(j->err, sizeof(j->err), "the client's name is over %zu octets",
                     sizeof(j->name) - 1);
            STAT_INC(w->st.refused);
            return;
        }
        STAT_INC(w->st.contexts);
    }
}

/* A datagram of a protected UDP ASSOCIATE, either way (RFC 1961 section 5). */
static void
do_dgram(struct gssw *w, struct gssw_job *j)
{
    struct gssw_sess *s = j->sess;
    ssize_t n = -EINVAL;
    bool conf = s->level == GSSFRAME_LEVEL_CONF;
    j->out_len = 0;
    if (s->done && s->ctx && s->level != GSSFRAME_LEVEL_NONE) {
        if (j->kind == GSSW_WRAP_DGRAM) {
            n = gssacc_wrap(s->ctx, conf, j->in, j->in_len, j->out, j->out_cap);
        } else {
            bool was_conf;
            n = gssacc_unwrap_dgram(s->ctx, j->in, j->in_len, j->out, j->out_cap, &was_conf);
            /* Level 2 is confidentiality for every message: one in the clear is refused. */
            if (n >= 0 && conf && !was_conf)
                n = -EACCES;
        }
    }
    j->res = n < 0 ? (int)n : (int)(j->out_len = (uint32_t)n);
    if (n < 0)
        STAT_INC(w->st.dgram_errors);
    else if (j->kind == GSSW_WRAP_DGRAM)
        STAT_INC(w->st.wrapped);
    else
        STAT_INC(w->st.unwrapped);
}

/* --- protected tunnels (worker) ---------------------------------------------- */

static uint32_t
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t)ts.tv_sec;
}

static void
tun_end(struct gssw *w, struct tun *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        w->tuns = t->next;
    if (t->next)
        t->next->prev = t->prev;
    if (t->p_gone)
        w->n_gone--;
    /* Closing takes them out of the epoll set. */
    close(t->cfd);
    close(t->pfd);
    sess_free(t->s);
    free(t->in);
    free(t->pend);
    free(t->out);
    t->dead = true;
    t->next = w->dead;
    w->dead = t;
    STAT_DEC(w->st.open);
}

static void
free_dead(struct gssw *w)
{
    struct tun *t;
    while ((t = w->dead)) {
        w->dead = t->next;
        free(t);
    }
}

/* Watch fd for mask: an fd with nothing to watch leaves the set (a hung-up socket would
 * report EPOLLHUP for ever), except pfd before its peer closed, whose EPOLLHUP is news. */
static int
watch(struct gssw *w, struct tun *t, bool pair, uint32_t mask)
{
    int fd = pair ? t->pfd : t->cfd;
    uint32_t *cur = pair ? &t->pmask : &t->cmask;
    bool *reg = pair ? &t->preg : &t->creg;
    bool keep = mask || (pair && !t->p_gone);
    struct epoll_event ev = {.events = mask, .data.u64 = (uintptr_t)t | (pair ? 1u : 0u)};
    if (!keep) {
        if (*reg && epoll_ctl(w->ep, EPOLL_CTL_DEL, fd, NULL) < 0)
            return -errno;
        *reg = false;
    } else if (!*reg) {
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            return -errno;
        *reg = true;
    } else if (*cur != mask) {
        if (epoll_ctl(w->ep, EPOLL_CTL_MOD, fd, &ev) < 0)
            return -errno;
    }
    *cur = mask;
    return 0;
}

/* Write p[0..n) to fd until it would block: the bytes written, or -errno. */
static ssize_t
send_some(int fd, const uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = send(fd, p + done, n - done, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno == EAGAIN ? (ssize_t)done : -errno;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

/* Read up to n bytes: how many, 0 at EOF, -EAGAIN or another -errno. */
static ssize_t
recv_some(int fd, uint8_t *p, size_t n)
{
    for (;;) {
        ssize_t r = recv(fd, p, n, 0);
        if (r >= 0 || errno != EINTR)
            return r < 0 ? -errno : r;
    }
}

/* Write what is pending at buf[*off..len) to fd: 1 all written (buf freed), 0 blocked, < 0
 * the error. */
static int
flush(int fd, uint8_t **buf, size_t *off, size_t *len)
{
    ssize_t r = send_some(fd, *buf + *off, *len - *off);
    if (r < 0)
        return (int)r;
    *off += (size_t)r;
    if (*off < *len)
        return 0;
    free(*buf);
    *buf = NULL;
    *off = *len = 0;
    return 1;
}

/* Write p[0..n) to fd; what the socket does not take is kept in *keep. 1, 0 or < 0 as flush(). */
static int
send_or_keep(int fd, const uint8_t *p, size_t n, uint8_t **keep, size_t *off, size_t *len)
{
    ssize_t done = send_some(fd, p, n);
    if (done < 0)
        return (int)done;
    if ((size_t)done == n)
        return 1;
    *keep = malloc(n - (size_t)done);
    if (!*keep)
        return -ENOMEM;
    memcpy(*keep, p + done, n - (size_t)done);
    *off = 0;
    *len = n - (size_t)done;
    return 0;
}

/* Client -> pair: frames from t->in, unwrapped, to pfd. 1 more may come, 0 blocked (on pfd or
 * the client), < 0 end the tunnel (frame error counted). */
static int
client_frames(struct gssw *w, struct tun *t)
{
    size_t at = 0;
    int ret = 1;
    while (at < t->in_len && !t->pend) {
        struct gssframe f;
        ssize_t n = gssframe_feed(&f, t->in + at, t->in_len - at, GSSFRAME_EXPECT_DATA,
                                  GSSFRAME_DATA_TOKEN_MAX);
        if (n == 0)
            break;
        if (n < 0)
            goto bad;
        bool was_conf;
        ssize_t m = gssacc_unwrap(t->s->ctx, t->in + at + GSSFRAME_HDR_LEN, f.len, w->plain,
                                  sizeof(w->plain), &was_conf);
        if (m < 0 || (t->conf && !was_conf))
            goto bad;
        STAT_INC(w->st.unwrapped);
        at += (size_t)n;
        int r = send_or_keep(t->pfd, w->plain, (size_t)m, &t->pend, &t->pend_off, &t->pend_len);
        if (r < 0) {
            ret = r;
            break;
        }
        if (r == 0)
            ret = 0;
    }
    memmove(t->in, t->in + at, t->in_len - at);
    t->in_len -= at;
    return ret;
bad:
    STAT_INC(w->st.frame_errors);
    return -EPROTO;
}

/* Read the client and pass its frames on, up to BUDGET reads. < 0: end the tunnel. */
static int
pump_client(struct gssw *w, struct tun *t)
{
    for (int i = 0; i < BUDGET && !t->pend && !t->c_eof && !t->p_gone; i++) {
        if (!t->in && !(t->in = malloc(IN_CAP)))
            return -ENOMEM;
        ssize_t n = recv_some(t->cfd, t->in + t->in_len, IN_CAP - t->in_len);
        if (n == -EAGAIN)
            break;
        if (n < 0)
            return (int)n;
        if (n == 0) {
            if (gssframe_eof(t->in_len) < 0) {
                STAT_INC(w->st.frame_errors);
                return -EPROTO;
            }
            t->c_eof = true;
            if (shutdown(t->pfd, SHUT_WR) < 0 && errno != ENOTCONN)
                return -errno;
            break;
        }
        t->in_len += (size_t)n;
        int r = client_frames(w, t);
        if (r < 0)
            return r;
    }
    if (t->in && t->in_len == 0) {
        /* Idle: an idle tunnel holds no buffer. */
        free(t->in);
        t->in = NULL;
    }
    return 0;
}

/* Read the shard's bytes, wrap and frame them to the client, up to BUDGET messages. */
static int
pump_pair(struct gssw *w, struct tun *t)
{
    ssize_t chunk = gssacc_wrap_limit(t->s->ctx, t->conf, OUT_TOKEN_CAP);
    if (chunk <= 0)
        return -EINVAL;
    if (chunk > CHUNK_MAX)
        chunk = CHUNK_MAX;
    for (int i = 0; i < BUDGET && !t->out && !t->p_eof; i++) {
        ssize_t n = recv_some(t->pfd, w->plain, (size_t)chunk);
        if (n == -EAGAIN)
            break;
        if (n < 0)
            return (int)n;
        if (n == 0) {
            t->p_eof = true;
            break;
        }
        ssize_t m = gssacc_wrap(t->s->ctx, t->conf, w->plain, (size_t)n,
                                w->wrapped + GSSFRAME_HDR_LEN, OUT_TOKEN_CAP);
        if (m < 0)
            return (int)m;
        STAT_INC(w->st.wrapped);
        gssframe_header(w->wrapped, GSSFRAME_MTYP_DATA, (size_t)m);
        int r = send_or_keep(t->cfd, w->wrapped, GSSFRAME_HDR_LEN + (size_t)m, &t->out, &t->out_off,
                             &t->out_len);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Everything the tunnel can do now; false: it ended (freed). */
static bool
tun_run(struct gssw *w, struct tun *t)
{
    int r = 0;
    if (t->pend && (r = flush(t->pfd, &t->pend, &t->pend_off, &t->pend_len)) < 0)
        goto end;
    if (t->out && (r = flush(t->cfd, &t->out, &t->out_off, &t->out_len)) < 0)
        goto end;
    /* Frames already in (a partial write to pfd stopped them) go on before more are read. */
    if (!t->pend && t->in_len && (r = client_frames(w, t)) < 0)
        goto end;
    if ((r = pump_client(w, t)) < 0)
        goto end;
    if ((r = pump_pair(w, t)) < 0)
        goto end;
    if (t->p_eof && !t->out && !t->c_shut) {
        t->c_shut = true;
        if (shutdown(t->cfd, SHUT_WR) < 0 && errno != ENOTCONN) {
            r = -errno;
            goto end;
        }
    }
    /* Done: EOF forwarded both ways, or the shard is gone and has nothing more to send. */
    if (t->c_shut && (t->c_eof || t->p_gone))
        goto end;
    uint32_t cm = 0, pm = 0;
    if (!t->pend && !t->c_eof && !t->p_gone)
        cm |= EPOLLIN;
    if (t->out)
        cm |= EPOLLOUT;
    if (!t->out && !t->p_eof)
        pm |= EPOLLIN;
    if (t->pend)
        pm |= EPOLLOUT;
    if ((r = watch(w, t, false, cm)) < 0 || (r = watch(w, t, true, pm)) < 0)
        goto end;
    return true;
end:
    (void)r;
    tun_end(w, t);
    return false;
}

static void
do_protect(struct gssw *w, struct gssw_job *j)
{
    struct gssw_sess *s = j->sess;
    struct tun *t = NULL;
    if (s && s->done && (s->level == GSSFRAME_LEVEL_INTEG || s->level == GSSFRAME_LEVEL_CONF))
        t = calloc(1, sizeof(*t));
    if (t && j->in_len && !(t->in = malloc(IN_CAP))) {
        free(t);
        t = NULL;
    }
    if (!t || j->in_len > IN_CAP) {
        /* Nothing to protect with, or no memory: the connection ends. */
        close(j->cfd);
        close(j->pfd);
        sess_free(s);
        if (t)
            free(t->in);
        free(t);
        return;
    }
    t->s = s;
    t->cfd = j->cfd;
    t->pfd = j->pfd;
    t->conf = s->level == GSSFRAME_LEVEL_CONF;
    fcntl(t->cfd, F_SETFL, fcntl(t->cfd, F_GETFL) | O_NONBLOCK);
    fcntl(t->pfd, F_SETFL, fcntl(t->pfd, F_GETFL) | O_NONBLOCK);
    if (j->in_len)
        memcpy(t->in, j->in, j->in_len);
    t->in_len = j->in_len;
    t->next = w->tuns;
    if (w->tuns)
        w->tuns->prev = t;
    w->tuns = t;
    STAT_INC(w->st.tunnels);
    STAT_INC(w->st.open);
    tun_run(w, t);
}

/* --- the worker thread -------------------------------------------------------- */

static void
do_job(struct gssw *w, struct gssw_job *j)
{
    switch (j->kind) {
    case GSSW_ACCEPT:
        do_accept(w, j);
        break;
    case GSSW_LEVEL:
        do_level(w, j);
        break;
    case GSSW_UNWRAP_DGRAM:
    case GSSW_WRAP_DGRAM:
        do_dgram(w, j);
        break;
    case GSSW_PROTECT:
        do_protect(w, j);
        gssw_job_free(j);
        return;
    case GSSW_FREE:
        sess_free(j->sess);
        gssw_job_free(j);
        return;
    default:
        j->res = -EINVAL;
        snprintf(j->err, sizeof(j->err), "unknown job %u", j->kind);
        break;
    }
    mpsc_push(&w->resp, j);
    bump(w->resp_fd);
}

/* Tunnels whose shard end closed and whose client would not take the rest in time. */
static void
expire(struct gssw *w)
{
    uint32_t now = now_s();
    struct tun *t = w->tuns;
    while (t) {
        struct tun *next = t->next;
        if (t->p_gone && now - t->gone_at_s >= GONE_GRACE_S)
            tun_end(w, t);
        t = next;
    }
}

static void *
worker_main(void *arg)
{
    struct gssw *w = arg;
    struct epoll_event evs[64];
    while (!atomic_load_explicit(&w->stop, memory_order_acquire)) {
        int n = epoll_wait(w->ep, evs, 64, w->n_gone ? 1000 : -1);
        if (n < 0 && errno != EINTR) {
            perror("ringsocks: gss worker epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            uint64_t d = evs[i].data.u64;
            if (d == 0) {
                uint64_t v;
                if (read(w->req_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                    perror("ringsocks: gss worker eventfd");
                continue;
            }
            struct tun *t = (struct tun *)(uintptr_t)(d & ~(uint64_t)1);
            if (t->dead)
                continue; /* ended earlier in this batch */
            /* The shard closed its end (an error there ends it as surely): it reads nothing
             * more, and the fd, left in the set for this news alone, leaves it. */
            if ((d & 1) && (evs[i].events & (EPOLLHUP | EPOLLERR)) && !t->p_gone) {
                t->p_gone = true;
                t->gone_at_s = now_s();
                w->n_gone++;
            }
            tun_run(w, t);
        }
        struct gssw_job *j;
        while ((j = mpsc_pop(&w->req)))
            do_job(w, j);
        if (w->n_gone)
            expire(w);
        free_dead(w);
    }
    return NULL;
}

/* --- the interface (shard thread, main thread) --------------------------------- */

int
gssw_init(struct shard *sh)
{
    struct gssw *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->sh = sh;
    w->req_fd = w->resp_fd = w->ep = -1;
    sh->gssw = w;
    mpsc_init(&w->req);
    mpsc_init(&w->resp);
    w->req_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    w->resp_fd = eventfd(0, EFD_CLOEXEC); /* read by the shard's io_uring */
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->req_fd < 0 || w->resp_fd < 0 || w->ep < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->req_fd, &ev) < 0)
        return -errno;
    int ret = pthread_create(&w->thread, NULL, worker_main, w);
    if (ret)
        return -ret;
    w->started = true;
    char name[16];
    snprintf(name, sizeof(name), "gss-%u", sh->id);
    pthread_setname_np(w->thread, name);
    return 0;
}

static void
drop_job(struct gssw_job *j)
{
    if (j->kind == GSSW_PROTECT) {
        close(j->cfd);
        close(j->pfd);
    }
    if (j->kind == GSSW_PROTECT || j->kind == GSSW_FREE)
        sess_free(j->sess);
    gssw_job_free(j);
}

void
gssw_fini(struct shard *sh)
{
    struct gssw *w = sh->gssw;
    if (!w)
        return;
    if (w->started) {
        atomic_store_explicit(&w->stop, true, memory_order_release);
        bump(w->req_fd);
        pthread_join(w->thread, NULL);
    }
    /* The worker is gone: its tunnels and the queued jobs are ours. Answers nobody took
     * name sessions their shard ends with GSSW_FREE (or has ended). */
    while (w->tuns)
        tun_end(w, w->tuns);
    free_dead(w);
    struct gssw_job *j;
    while ((j = mpsc_pop(&w->req)))
        drop_job(j);
    while ((j = mpsc_pop(&w->resp)))
        gssw_job_free(j);
    if (w->req_fd >= 0)
        close(w->req_fd);
    if (w->resp_fd >= 0)
        close(w->resp_fd);
    if (w->ep >= 0)
        close(w->ep);
    free(w);
    sh->gssw = NULL;
}

void
gssw_arm(struct shard *sh)
{
    struct gssw *w = sh->gssw;
    struct io_uring_sqe *sqe = ring_sqe(&sh->ring, &sh->st);
    io_uring_prep_read(sqe, w->resp_fd, &w->resp_val, sizeof(w->resp_val), 0);
    io_uring_sqe_set_data64(sqe, ud_make(OP_GSS, 0, 0, 0));
}

void
gssw_on_cqe(struct shard *sh)
{
    struct gssw *w = sh->gssw;
    struct gssw_job *j;
    while ((j = mpsc_pop(&w->resp)))
        if (!conn_gss(sh, j->ref, j))
            gssw_job_free(j);
    if (!sh->stopping)
        gssw_arm(sh);
}

void
gssw_submit(struct shard *sh, struct gssw_job *j)
{
    struct gssw *w = sh->gssw;
    mpsc_push(&w->req, j);
    bump(w->req_fd);
}

void
gssw_stats_read(struct shard *sh, struct gssw_stats *out)
{
    memset(out, 0, sizeof(*out));
    const struct gssw *w = sh->gssw;
    if (!w)
        return;
    const uint64_t *src = (const uint64_t *)&w->st;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}
