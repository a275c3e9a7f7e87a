/*
 * authq.c - each shard's credential checker (authq.h).
 *
 * Each shard owns one authq: a cache only its thread touches (authcache.c),
 * and a worker thread that runs crypt(3). Shard and worker talk through two
 * single-producer single-consumer rings and two eventfds: the shard writes
 * a job and bumps the worker's eventfd (a write that never blocks); the
 * worker answers in the other ring and bumps the shard's eventfd, which the
 * shard reads through its ring. Nothing here blocks the shard.
 */
#include "authq.h"

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "authcache.h"
#include "policy.h"
#include "session.h"
#include "shard.h"
#include "users.h"

#define RING_SLOTS  256  /* jobs in flight per shard, power of two */
#define WAIT_SLOTS  1024 /* handshakes waiting on another's check, per shard */

struct auth_job {
    uint64_t cookie;
    uint8_t digest[AUTHCACHE_DIGEST];
    bool inflight; /* shard-owned: queued to the worker, result not yet taken */
    bool unknown;  /* no such user: checked against the dummy, refused whatever happens */
    bool ok;
    char pass[256];
    char hash[CRYPT_OUTPUT_SIZE];
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
    struct auth_job jobs[RING_SLOTS]; /* free list below, shard-owned */
    struct auth_job *free_jobs[RING_SLOTS];
    unsigned n_free;
    /* Handshakes waiting on a check of the same credential already in flight
     * (a client's workers all start at once on a cold cache): one crypt(3)
     * run answers them all. Shard-owned. */
    struct {
        struct auth_job *job;
        uint64_t cookie;
    } followers[WAIT_SLOTS];
    unsigned n_followers;
    int req_fd, resp_fd; /* eventfds: wake the worker, wake the shard */
    uint64_t resp_val;
    pthread_t thread;
    bool started;
    atomic_bool stop;
};

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
        bool any = false;
        while ((j = spsc_pop(&q->req))) {
            const char *out = crypt_rn(j->pass, j->hash, cd, sizeof(*cd));
            size_t hl = strlen(j->hash);
            /* crypt_rn returns NULL or a string starting with '*' on failure. */
            bool match = out && out[0] != '*' && strlen(out) == hl &&
                         sodium_memcmp(out, j->hash, hl) == 0;
            /* The dummy's run is the same work; its answer is always no. */
            j->ok = match && !j->unknown;
            sodium_memzero(j->pass, sizeof(j->pass));
            sodium_memzero(cd, sizeof(*cd));
            /* The response ring has as many slots as there are jobs: never full. */
            spsc_push(&q->resp, j);
            any = true;
        }
        uint64_t one = 1;
        if (any && write(q->resp_fd, &one, sizeof(one)) < 0)
            perror("ringsocks: auth worker eventfd");
    }
    free(cd);
    return NULL;
}

int
authq_init(struct shard *sh)
{
    struct authq *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->sh = sh;
    q->req_fd = q->resp_fd = -1;
    authcache_init(&q->cache);
    for (unsigned i = 0; i < RING_SLOTS; i++)
        q->free_jobs[i] = &q->jobs[i];
    q->n_free = RING_SLOTS;
    sh->authq = q;
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
    if (q->req_fd >= 0)
        close(q->req_fd);
    if (q->resp_fd >= 0)
        close(q->resp_fd);
    sodium_memzero(q, sizeof(*q));
    free(q);
    sh->authq = NULL;
}

void
authq_arm(struct shard *sh)
{
    struct authq *q = sh->authq;
    struct io_uring_sqe *sqe = shard_sqe(sh);
    io_uring_prep_read(sqe, q->resp_fd, &q->resp_val, sizeof(q->resp_val), 0);
    io_uring_sqe_set_data64(sqe, ud_make(OP_AUTH, 0, 0));
}

enum authq_result
authq_check(struct shard *sh, uint64_t cookie, const struct auth_cred *cred)
{
    struct authq *q = sh->authq;
    const struct users *users = sh->pol->users;
    const char *hash = users_hash(users, cred->user);
    bool unknown = !hash;
    /*
     * An unknown name takes the same path as a known one with a wrong
     * password, crypt(3) of the dummy included: cache, coalescing, queue.
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
    /* The same credential is being checked: wait for that answer. Only the
     * jobs in flight are compared (none, on a warm server: no scan at all). */
    unsigned busy = q->n_followers < WAIT_SLOTS ? RING_SLOTS - q->n_free : 0;
    for (unsigned i = 0; busy && i < RING_SLOTS; i++) {
        struct auth_job *f = &q->jobs[i];
        if (f->inflight) {
            busy--;
            if (crypto_verify_32(f->digest, digest) == 0) {
                q->followers[q->n_followers].job = f;
                q->followers[q->n_followers].cookie = cookie;
                q->n_followers++;
                STAT_INC(sh->st.auth_coalesced);
                return AUTHQ_PENDING;
            }
        }
    }
    if (q->n_free == 0) {
        /* More slow checks in flight than the worker queue holds: shed. */
        STAT_INC(sh->st.auth_overload);
        return AUTHQ_FAIL;
    }
    struct auth_job *j = q->free_jobs[--q->n_free];
    j->cookie = cookie;
    memcpy(j->digest, digest, AUTHCACHE_DIGEST);
    memcpy(j->pass, cred->pass, (size_t)cred->plen + 1);
    snprintf(j->hash, sizeof(j->hash), "%s", hash);
    j->unknown = unknown;
    j->inflight = true;
    spsc_push(&q->req, j);
    uint64_t one = 1;
    if (write(q->req_fd, &one, sizeof(one)) < 0)
        STAT_INC(sh->st.auth_overload);
    STAT_INC(sh->st.auth_slow_checks);
    return AUTHQ_PENDING;
}

void
authq_on_cqe(struct shard *sh)
{
    struct authq *q = sh->authq;
    struct auth_job *j;
    while ((j = spsc_pop(&q->resp))) {
        authcache_put(&q->cache, j->digest, j->ok, sh->now_s);
        uint64_t cookie = j->cookie;
        bool ok = j->ok;
        /* Take this job's followers out first: session_on_auth may start new checks. */
        uint64_t waiting[WAIT_SLOTS];
        unsigned n_waiting = 0;
        for (unsigned i = 0; i < q->n_followers;) {
            if (q->followers[i].job == j) {
                waiting[n_waiting++] = q->followers[i].cookie;
                q->followers[i] = q->followers[--q->n_followers];
            } else {
                i++;
            }
        }
        sodium_memzero(j, sizeof(*j));
        q->free_jobs[q->n_free++] = j;
        session_on_auth(sh, cookie, ok);
        for (unsigned i = 0; i < n_waiting; i++)
            session_on_auth(sh, waiting[i], ok);
    }
    if (!sh->stopping)
        authq_arm(sh);
}
