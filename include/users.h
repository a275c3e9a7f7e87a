/*
 * users.h - the user table (RFC 1929 credentials) and each shard's
 * credential checker.
 *
 * The table is loaded by main() before the shards start and is read-only
 * afterwards. A credential is checked against its crypt(3) hash once, on
 * the shard's auth worker thread (a hash costs milliseconds: never on a
 * shard); the shard then remembers a keyed BLAKE2b digest of the verified
 * (user, password, hash) and answers the same credential again from that,
 * compared in constant time. The stored hash is part of the digest, so a
 * changed hash never matches an old entry.
 */
#ifndef RINGSOCKS_USERS_H
#define RINGSOCKS_USERS_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"

struct users;
struct shard;

/*
 * Main thread: load "user:hash" lines ('#' comments and blank lines
 * allowed). On error returns NULL and writes "FILE:LINE: message" to err.
 */
struct users *users_load(const char *path, char *err, size_t errlen);
void users_free(struct users *u);
/* Any thread: the crypt hash of user, or NULL. */
const char *users_hash(const struct users *u, const char *user);
size_t users_count(const struct users *u);

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
