/*
 * authq.h - each shard's password checker: the digest cache in front
 * (authcache.h), a crypt(3) worker thread behind, and between them two
 * queues on the shard, one for clients in good standing and one for
 * addresses that are failing or flooding.
 *
 * Contract, the reason this exists: a check is answered right or not at
 * all. A correct password is never refused for lack of room; a check
 * waits, without a bound in count, for as long as its connection waits
 * (the handshake timeout bounds that), and a connection that goes away
 * takes its place in the queue with it, so departed clients cost no
 * crypt(3). Unknown user names are checked against a dummy hash of the
 * same cost (users_dummy()), so they take as long as known ones.
 *
 * Every function runs on the shard's thread, except authq_init() and
 * authq_fini() (main thread, before the shard starts / after it stopped).
 */
#ifndef RINGSOCKS_AUTHQ_H
#define RINGSOCKS_AUTHQ_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "auth.h"

struct shard;

/* Jobs the worker holds at once; the rest wait on the shard, where their order can change. */
#define AUTHQ_WINDOW 4

/* Main thread, before the shard starts: the worker thread, cache and queues.
 * Waiter indexes are 0 .. sh->o->hs_slots - 1. */
int authq_init(struct shard *sh);
/* Main thread, after the shard stopped. */
void authq_fini(struct shard *sh);

enum authq_result {
    AUTHQ_CLOSE = -2,  /* no verdict possible (out of memory): close without an answer */
    AUTHQ_FAIL = -1,   /* answer failure now */
    AUTHQ_PENDING = 0, /* conn_authed(sh, cookie, ok) follows, or authq_cancel() */
    AUTHQ_OK = 1,      /* answer success now */
};

/*
 * Check cred for the connection identified by cookie (a conn_ref()), coming from client
 * (unmapped). waiter names the connection's place while it waits (its
 * handshake context): one check per waiter at a time; the same waiter is
 * free again after conn_authed() or authq_cancel(). cred is only read
 * during the call (the caller wipes the password afterwards).
 */
enum authq_result authq_check(struct shard *sh, uint32_t waiter, uint64_t cookie,
                              const union sockaddr_inx *client, const struct auth_cred *cred);
/* The connection of a pending check is going away without its answer. */
void authq_cancel(struct shard *sh, uint32_t waiter);
/* The worker's eventfd fired (OP_AUTH): deliver results, feed the worker, re-arm. */
void authq_on_cqe(struct shard *sh);
/* At start: arm the read on the worker's eventfd. */
void authq_arm(struct shard *sh);

/* Pure: does a check from an address with these counts go to the front queue? */
static inline bool
authq_in_budget(uint32_t recent_failures, uint32_t queued, uint32_t budget)
{
    return budget == 0 || (uint64_t)recent_failures + queued < budget;
}

#endif
