/*
 * authq.h - each shard's credential checker. A credential is checked
 * against its crypt(3) hash once, on the shard's auth worker thread (a hash
 * costs milliseconds: never on a shard); the shard then remembers a keyed
 * BLAKE2b digest of the verified (user, password, hash) and answers the
 * same credential again from that, compared in constant time. The stored
 * hash is part of the digest, so a changed hash never matches an old entry.
 */
#ifndef RINGSOCKS_AUTHQ_H
#define RINGSOCKS_AUTHQ_H

#include <stdint.h>

#include "auth.h"

struct shard;

/* Main thread, before the shard starts: its worker thread and cache. */
int authq_init(struct shard *sh);
/* Main thread, after the shard stopped. */
void authq_fini(struct shard *sh);

enum authq_result {
    AUTHQ_FAIL = -1,   /* answer failure now */
    AUTHQ_PENDING = 0, /* session_on_auth(sh, cookie, ok) follows */
    AUTHQ_OK = 1,      /* answer success now */
};

/* Shard thread: check cred for the connection identified by cookie. */
enum authq_result authq_check(struct shard *sh, uint64_t cookie, const struct auth_cred *cred);
/* Shard thread: the worker's eventfd fired (OP_AUTH): deliver results, re-arm. */
void authq_on_cqe(struct shard *sh);
/* Shard thread, at start: arm the read on the worker's eventfd. */
void authq_arm(struct shard *sh);

#endif
