/*
 * lockout.h - failed RFC 1929 logins counted across all shards, and the keys
 * they lock: a (client address, user name) pair after a few failures, a whole
 * client address only after many (one guessing client behind a NAT must not
 * lock out its neighbours).
 *
 * Semantics (docs/config.md, auth_lockout_*): a key's failures are counted
 * from its first one, for `window_s` seconds; the failure that brings the
 * count to the threshold locks the key for `duration_s` seconds from that
 * failure, after which it is forgotten (expiry is by time alone). A failure
 * after the window has passed starts a new count. A successful login clears
 * its pair's count (not its address's, and not a lock). A threshold of 0
 * turns its scope off. The client address is its IPv4 address or its IPv6 /64
 * (addr_client_key()); the user name is the base name (a username_params
 * session suffix is taken off by the caller).
 *
 * Memory: one fixed table of 64-bit words per scope, allocated by
 * lockout_new() and never grown; the data path allocates nothing and takes no
 * lock. Each word holds a 16-bit tag of its key, a count (or the lock mark)
 * and a time in seconds, and is updated by compare-and-swap, so every thread
 * may call every function but lockout_new()/lockout_free() concurrently.
 * Words are found by SipHash-2-4 (libsodium crypto_shorthash) of the key with
 * a random per-process key: which keys share a word cannot be aimed at.
 *
 * Two candidate words per key. A key lives in the first of them that holds
 * it, else takes the first free (or expired) one; a live word of another key
 * is never taken over, so nobody can evict a record by making new ones. When
 * both candidates are live for other keys, the key shares the less loaded one
 * (unlocked before locked, then the lower count): its failures count there,
 * raising the other key's count, and it is locked when that word is. Failures
 * are over-counted (a neighbour may be locked early) rather than forgotten (a
 * guesser would go uncounted). Two keys with the same word and the same tag
 * are one key (odds 2^-16 per live neighbour); both lead to over-counting,
 * and only when the table is crowded (more failing keys in a window than
 * there are words).
 */
#ifndef RINGSOCKS_LOCKOUT_H
#define RINGSOCKS_LOCKOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* Words per scope in the server's tables: 512 KiB each, 1 MiB in all. */
#define LOCKOUT_SLOTS        65536u
/* The highest threshold a count can reach (the word's count field saturates above it). */
#define LOCKOUT_MAX_FAILURES 65534u

enum lockout_scope {
    LOCKOUT_PAIR = 0, /* (client address, user name) */
    LOCKOUT_ADDRESS,  /* client address, any user */
    LOCKOUT__SCOPES,
};

/* The thresholds and times (the reloadable options, copied into the policy snapshot). */
struct lockout_params {
    uint32_t failures;         /* per pair; 0: pairs never lock */
    uint32_t address_failures; /* per address; 0: addresses never lock */
    uint32_t window_s;         /* failures are counted this long from the first */
    uint32_t duration_s;       /* a key is locked this long from the failure that locked it */
};

/* Hash of len bytes (tests may replace SipHash, lockout_set_hash()). */
typedef uint64_t (*lockout_hash_fn)(const uint8_t *p, size_t len, const void *arg);

struct lockout;

/* Main thread, at start: tables of `slots` words per scope (a power of two >= 2), all
 * free, with a fresh random hash key. NULL when out of memory or slots is not one. */
struct lockout *lockout_new(uint32_t slots);
/* Main thread, after every shard stopped. NULL is fine. */
void lockout_free(struct lockout *lk);
/* Tests: hash keys with fn(key bytes, len, arg) instead. Before any other use. */
void lockout_set_hash(struct lockout *lk, lockout_hash_fn fn, const void *arg);

/*
 * Any thread. Is the pair (client, user) or the client address locked at now_s
 * (seconds of one clock every caller shares)? *scope (may be NULL) gets which,
 * the pair's when both are. client must be unmapped; user is NUL-terminated.
 */
bool lockout_locked(const struct lockout *lk, const struct lockout_params *p,
                    const union sockaddr_inx *client, const char *user, uint32_t now_s,
                    enum lockout_scope *scope);
/*
 * Any thread. A login of (client, user) failed at now_s: count it for the pair
 * and the address. Returns the scopes this failure locked, a mask of
 * 1u << LOCKOUT_PAIR and 1u << LOCKOUT_ADDRESS (0: none), each reported once
 * however many threads fail the key at once.
 */
unsigned lockout_fail(struct lockout *lk, const struct lockout_params *p,
                      const union sockaddr_inx *client, const char *user, uint32_t now_s);
/* Any thread. A login of (client, user) succeeded: the pair's count is cleared. */
void lockout_success(struct lockout *lk, const struct lockout_params *p,
                     const union sockaddr_inx *client, const char *user, uint32_t now_s);
/*
 * Any thread, for tests and diagnostics: the failures counted for the key of
 * scope now (user is ignored for LOCKOUT_ADDRESS), the scope's threshold when it
 * is locked, 0 when the scope is off or nothing is counted.
 */
uint32_t lockout_count(const struct lockout *lk, const struct lockout_params *p,
                       enum lockout_scope scope, const union sockaddr_inx *client, const char *user,
                       uint32_t now_s);

#endif
