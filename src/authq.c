/*
 * authq.c - each shard's password checker (authq.h).
 *
 * Owns, per shard: the digest cache (authcache.c), the jobs waiting for
 * crypt(3), an index of them by digest (identical credentials wait for one
 * run), one waiter record per handshake context, and a worker thread.
 *
 * Threads: the shard thread does everything but crypt(3); the worker only
 * pops a job, runs crypt(3) unless the job was cancelled, and pushes it
 * back. They talk through two single-producer single-consumer rings and two
 * eventfds: the shard pushes a job and bumps the worker's eventfd (a write
 * that never blocks); the worker answers in the other ring and bumps the
 * shard's eventfd, which the shard reads through its io_uring. Nothing here
 * blocks the shard, and crypt(3) never runs on it.
 *
 * Why the queues live on the shard and the worker holds only AUTHQ_WINDOW
 * jobs: a job handed to the worker is served in order; one still on the
 * shard can be served later than a newer one (a client in good standing
 * overtakes a failing address), or dropped when its connection leaves.
 * There is no limit in count: every waiting connection holds a handshake
 * context, so jobs never outnumber the shard's handshake slots, and the
 * handshake timeout bounds how long one waits. The old fixed 256-job queue
 * answered "wrong password" to right ones when it was full.
 */
#include "authq.h"

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "authcache.h"
#include "clients.h"
#include "policy.h"
#include "conn.h"
#include "ring.h"
#include "shard_types.h"
#include "users.h"

#define RING_SLOTS 16 /* per SPSC ring, a power of two >= AUTHQ_WINDOW */
#define NIL        UINT32_MAX

_Static_assert(AUTHQ_WINDOW <= RING_SLOTS, "the worker rings hold every job handed over");

enum job_where {
    JOB_FRONT = 0, /* the shard's queue for addresses within their budget */
    JOB_BACK = 1,  /* the shard's queue for the others: served when the front one is empty */
    JOB_WORKER,    /* handed to the worker */
    JOB_DONE,      /* answered: its waiters are being told */
};

struct auth_job {
    struct auth_job *prev, *next; /* in its queue while JOB_FRONT/JOB_BACK */
    struct auth_job *hnext;       /* in the digest index */
    uint8_t digest[AUTHCACHE_DIGEST];
    union sockaddr_inx client; /* the address that asked first: charged for it */
    uint32_t waiters;          /* first waiter, NIL: none */
    uint32_t n_waiters;
    uint8_t where;         /* enum job_where */
    bool indexed;          /* in the digest index (identical checks may join it) */
    bool counted;          /* CLIENT_AUTH was counted for client */
    bool unknown;          /* no such user: checked against the dummy, refused whatever happens */
    atomic_bool cancelled; /* set by the shard: nobody waits any more, skip crypt(3) */
    bool ran, ok;          /* written by the worker before it hands the job back */
    char pass[256];
    char hash[CRYPT_OUTPUT_SIZE];
};

/* A connection waiting for a check, indexed by its handshake context. */
struct waiter {
    struct auth_job *job; /* NULL: not waiting */
    uint64_t cookie;
    uint32_t prev, next; /* the job's other waiters */
};

struct jlist {
    struct auth_job *head, *tail;
};

struct spsc {
    _Alignas(64) atomic_uint head; /* written by the consumer */
    _Alignas(64) atomic_uint tail; /* written by the producer */
    struct auth_job *slot[RING_SLOTS];
};

struct authq {
    struct shard *sh;
    struct authcache cache;
    struct spsc req, resp;
    struct jlist q[2];  /* JOB_FRONT, JOB_BACK */
    unsigned at_worker; /* jobs handed over and not back yet */
    struct waiter *w;
    uint32_t n_w;
    struct auth_job **idx; /* buckets by digest */
    uint32_t idx_mask;
    int req_fd, resp_fd; /* eventfds: wake the worker, wake the shard */
    uint64_t resp_val;
    pthread_t thread;
    bool started;
    atomic_bool stop;
};

/* --- the rings ------------------------------------------------------------ */

static bool
spsc_push(struct spsc *q, struct auth_job *j)
{
    unsigned t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    unsigned h = atomic_load_explicit(&q->head, memory_order_acquire);
    if (t - h == RING_SLOTS)
        return false;
    q->slot[t & (RING_SLOTS - 1)] = j;
    atomic_store_explicit(&q->tail, t + 1, memory_order_release);
    return true;
}

static struct auth_job *
spsc_pop(struct spsc *q)
{
    unsigned h = atomic_load_explicit(&q->head, memory_order_relaxed);
    unsigned t = atomic_load_explicit(&q->tail, memory_order_acquire);
    if (h == t)
        return NULL;
    struct auth_job *j = q->slot[h & (RING_SLOTS - 1)];
    atomic_store_explicit(&q->head, h + 1, memory_order_release);
    return j;
}

/* --- the worker ----------------------------------------------------------- */

static void *
worker_main(void *arg)
{
    struct authq *q = arg;
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (!cd)
        return NULL;
    for (;;) {
        uint64_t v;
        if (read(q->req_fd, &v, sizeof(v)) < 0 && errno == EINTR)
            continue;
        if (atomic_load_explicit(&q->stop, memory_order_acquire))
            break;
        struct auth_job *j;
        while ((j = spsc_pop(&q->req))) {
            if (!atomic_load_explicit(&j->cancelled, memory_order_acquire)) {
                const char *out = crypt_rn(j->pass, j->hash, cd, sizeof(*cd));
                size_t hl = strlen(j->hash);
                /* crypt_rn returns NULL or a string starting with '*' on failure. */
                bool match = out && out[0] != '*' && strlen(out) == hl &&
                             sodium_memcmp(out, j->hash, hl) == 0;
                /* The dummy's run is the same work; its answer is always no. */
                j->ok = match && !j->unknown;
                j->ran = true;
                sodium_memzero(cd, sizeof(*cd));
            }
            sodium_memzero(j->pass, sizeof(j->pass));
            /* The response ring has room for every job handed over: never full. */
            spsc_push(&q->resp, j);
            /* One wake per job, so the shard hands over the next while this one runs. */
            uint64_t one = 1;
            if (write(q->resp_fd, &one, sizeof(one)) < 0)
                perror("ringsocks: auth worker eventfd");
        }
    }
    free(cd);
    return NULL;
}

/* --- jobs, queues, index, waiters (shard thread) --------------------------- */

static uint32_t
idx_bucket(const struct authq *q, const uint8_t *digest)
{
    /* The digest is keyed: nobody outside can aim at one bucket. */
    uint32_t h;
    memcpy(&h, digest, sizeof(h));
    return h & q->idx_mask;
}

static struct auth_job *
idx_find(const struct authq *q, const uint8_t *digest)
{
    for (struct auth_job *j = q->idx[idx_bucket(q, digest)]; j; j = j->hnext)
        if (crypto_verify_32(j->digest, digest) == 0)
            return j;
    return NULL;
}

static void
idx_add(struct authq *q, struct auth_job *j)
{
    struct auth_job **b = &q->idx[idx_bucket(q, j->digest)];
    j->hnext = *b;
    *b = j;
    j->indexed = true;
}

static void
idx_remove(struct authq *q, struct auth_job *j)
{
    if (!j->indexed)
        return;
    for (struct auth_job **p = &q->idx[idx_bucket(q, j->digest)]; *p; p = &(*p)->hnext) {
        if (*p == j) {
            *p = j->hnext;
            break;
        }
    }
    j->hnext = NULL;
    j->indexed = false;
}

static void
list_append(struct jlist *l, struct auth_job *j)
{
    j->next = NULL;
    j->prev = l->tail;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

static void
list_remove(struct jlist *l, struct auth_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        l->head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        l->tail = j->prev;
    j->prev = j->next = NULL;
}

static void
waiter_add(struct authq *q, struct auth_job *j, uint32_t wi, uint64_t cookie)
{
    struct waiter *w = &q->w[wi];
    w->job = j;
    w->cookie = cookie;
    w->prev = NIL;
    w->next = j->waiters;
    if (j->waiters != NIL)
        q->w[j->waiters].prev = wi;
    j->waiters = wi;
    j->n_waiters++;
}

static void
waiter_remove(struct authq *q, uint32_t wi)
{
    struct waiter *w = &q->w[wi];
    struct auth_job *j = w->job;
    if (w->prev != NIL)
        q->w[w->prev].next = w->next;
    else
        j->waiters = w->next;
    if (w->next != NIL)
        q->w[w->next].prev = w->prev;
    j->n_waiters--;
    w->job = NULL;
    w->prev = w->next = NIL;
}

static void
job_free(struct authq *q, struct auth_job *j)
{
    struct shard *sh = q->sh;
    if (j->counted)
        clients_dec(&sh->clients, &j->client, CLIENT_AUTH, sh->now_s);
    sodium_memzero(j, sizeof(*j));
    free(j);
}

/* Hand jobs to the worker, front queue first, until it holds AUTHQ_WINDOW. */
static void
feed(struct authq *q)
{
    bool pushed = false;
    while (q->at_worker < AUTHQ_WINDOW) {
        struct jlist *l = q->q[JOB_FRONT].head ? &q->q[JOB_FRONT] : &q->q[JOB_BACK];
        struct auth_job *j = l->head;
        if (!j)
            break;
        list_remove(l, j);
        j->where = JOB_WORKER;
        spsc_push(&q->req, j);
        q->at_worker++;
        pushed = true;
    }
    uint64_t one = 1;
    /* An eventfd write fails only when its counter would overflow: the worker is awake anyway. */
    if (pushed && write(q->req_fd, &one, sizeof(one)) < 0)
        STAT_INC(q->sh->st.auth_overload);
}

/* Does a new check from client go to the front queue? */
static bool
in_budget(struct shard *sh, const union sockaddr_inx *client)
{
    uint32_t budget = sh->pol->auth_fail_budget;
    if (budget == 0)
        return true;
    return authq_in_budget(clients_fails(&sh->clients, client, sh->now_s),
                           clients_get(&sh->clients, client, CLIENT_AUTH), budget);
}

/* --- the interface ----------------------------------------------------------- */

int
authq_init(struct shard *sh)
{
    struct authq *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->sh = sh;
    q->req_fd = q->resp_fd = -1;
    sh->authq = q;
    authcache_init(&q->cache);
    q->n_w = sh->o->hs_slots ? sh->o->hs_slots : 1;
    q->w = calloc(q->n_w, sizeof(*q->w));
    uint32_t buckets = 64;
    while (buckets < q->n_w)
        buckets *= 2;
    q->idx = calloc(buckets, sizeof(*q->idx));
    q->idx_mask = buckets - 1;
    if (!q->w || !q->idx)
        return -ENOMEM;
    for (uint32_t i = 0; i < q->n_w; i++)
        q->w[i].prev = q->w[i].next = NIL;
    q->req_fd = eventfd(0, EFD_CLOEXEC);
    q->resp_fd = eventfd(0, EFD_CLOEXEC);
    if (q->req_fd < 0 || q->resp_fd < 0)
        return -errno;
    int ret = pthread_create(&q->thread, NULL, worker_main, q);
    if (ret)
        return -ret;
    q->started = true;
    char name[16];
    snprintf(name, sizeof(name), "auth-%u", sh->id);
    pthread_setname_np(q->thread, name);
    return 0;
}

static void
free_list(struct jlist *l)
{
    struct auth_job *j;
    while ((j = l->head)) {
        l->head = j->next;
        sodium_memzero(j, sizeof(*j));
        free(j);
    }
}

void
authq_fini(struct shard *sh)
{
    struct authq *q = sh->authq;
    if (!q)
        return;
    if (q->started) {
        uint64_t one = 1;
        atomic_store_explicit(&q->stop, true, memory_order_release);
        if (write(q->req_fd, &one, sizeof(one)) < 0)
            perror("ringsocks: auth worker eventfd");
        pthread_join(q->thread, NULL);
    }
    /* The worker is gone: every job is in a ring or a queue. */
    struct auth_job *j;
    while ((j = spsc_pop(&q->req)) || (j = spsc_pop(&q->resp))) {
        sodium_memzero(j, sizeof(*j));
        free(j);
    }
    free_list(&q->q[JOB_FRONT]);
    free_list(&q->q[JOB_BACK]);
    if (q->req_fd >= 0)
        close(q->req_fd);
    if (q->resp_fd >= 0)
        close(q->resp_fd);
    free(q->w);
    free(q->idx);
    sodium_memzero(&q->cache, sizeof(q->cache));
    free(q);
    sh->authq = NULL;
}

void
authq_arm(struct shard *sh)
{
    struct authq *q = sh->authq;
    struct io_uring_sqe *sqe = ring_sqe(&sh->ring, &sh->st);
    io_uring_prep_read(sqe, q->resp_fd, &q->resp_val, sizeof(q->resp_val), 0);
    io_uring_sqe_set_data64(sqe, ud_make(OP_AUTH, 0, 0, 0));
}

enum authq_result
authq_check(struct shard *sh, uint32_t waiter, uint64_t cookie, const union sockaddr_inx *client,
            const struct auth_cred *cred)
{
    struct authq *q = sh->authq;
    const struct users *users = sh->pol->users;
    const char *hash = users_hash(users, cred->user);
    bool unknown = !hash;
    /*
     * An unknown name takes the same path as a known one with a wrong
     * password, crypt(3) of the dummy included: cache, coalescing, queues.
     * Without a dummy there are no users at all, and no names to find out.
     */
    if (unknown)
        hash = users_dummy(users);
    if (!hash)
        return AUTHQ_FAIL;

    uint8_t digest[AUTHCACHE_DIGEST];
    authcache_digest(&q->cache, cred, hash, digest);
    const struct authcache_entry *e = authcache_find(&q->cache, digest, sh->now_s);
    if (e) {
        STAT_INC(sh->st.auth_cache_hits);
        return e->state == AUTHCACHE_GOOD ? AUTHQ_OK : AUTHQ_FAIL;
    }
    if (waiter >= q->n_w || q->w[waiter].job)
        return AUTHQ_CLOSE; /* a caller bug; never a verdict we do not have */

    bool front = in_budget(sh, client);
    /* The same credential is being checked (a client's workers all start at once): wait for it. */
    struct auth_job *j = idx_find(q, digest);
    if (j) {
        waiter_add(q, j, waiter, cookie);
        STAT_INC(sh->st.auth_coalesced);
        /* A client in good standing is not made to wait behind a failing address. */
        if (front && j->where == JOB_BACK) {
            list_remove(&q->q[JOB_BACK], j);
            j->where = JOB_FRONT;
            list_append(&q->q[JOB_FRONT], j);
        }
        return AUTHQ_PENDING;
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        STAT_INC(sh->st.auth_overload);
        return AUTHQ_CLOSE;
    }
    atomic_init(&j->cancelled, false);
    memcpy(j->digest, digest, AUTHCACHE_DIGEST);
    j->client = *client;
    j->waiters = NIL;
    j->unknown = unknown;
    memcpy(j->pass, cred->pass, (size_t)cred->plen + 1);
    snprintf(j->hash, sizeof(j->hash), "%s", hash);
    j->counted = clients_inc(&sh->clients, client, CLIENT_AUTH, sh->now_s) >= 0;
    idx_add(q, j);
    waiter_add(q, j, waiter, cookie);
    j->where = front ? JOB_FRONT : JOB_BACK;
    list_append(&q->q[j->where], j);
    if (!front)
        STAT_INC(sh->st.auth_deferred);
    feed(q);
    return AUTHQ_PENDING;
}

void
authq_cancel(struct shard *sh, uint32_t waiter)
{
    struct authq *q = sh->authq;
    if (waiter >= q->n_w || !q->w[waiter].job)
        return;
    struct auth_job *j = q->w[waiter].job;
    waiter_remove(q, waiter);
    STAT_INC(sh->st.auth_abandoned);
    if (j->n_waiters)
        return;
    /* Nobody waits for it any more: not worth a crypt(3) run. */
    switch (j->where) {
    case JOB_FRONT:
    case JOB_BACK:
        list_remove(&q->q[j->where], j);
        idx_remove(q, j);
        STAT_INC(sh->st.auth_cancelled);
        job_free(q, j);
        break;
    case JOB_WORKER:
        /* Comes back through the ring; nobody may join it meanwhile. */
        idx_remove(q, j);
        atomic_store_explicit(&j->cancelled, true, memory_order_release);
        break;
    default:
        break;
    }
}

void
authq_on_cqe(struct shard *sh)
{
    struct authq *q = sh->authq;
    struct auth_job *j;
    while ((j = spsc_pop(&q->resp))) {
        q->at_worker--;
        idx_remove(q, j);
        j->where = JOB_DONE;
        if (!j->ran) {
            /* Cancelled before crypt(3): its waiters had all left, and it was out of the
             * index since, so none joined. */
            STAT_INC(sh->st.auth_cancelled);
            job_free(q, j);
            continue;
        }
        STAT_INC(sh->st.auth_slow_checks);
        authcache_put(&q->cache, j->digest, j->ok, sh->now_s);
        if (!j->ok)
            clients_fail(&sh->clients, &j->client, sh->now_s);
        /*
         * One waiter at a time off the list, the job still alive: an answer
         * may close connections, and a close cancels through this list.
         */
        uint32_t wi;
        while ((wi = j->waiters) != NIL) {
            uint64_t cookie = q->w[wi].cookie;
            waiter_remove(q, wi);
            conn_authed(sh, cookie, j->ok);
        }
        job_free(q, j);
    }
    feed(q);
    if (!sh->stopping)
        authq_arm(sh);
}
