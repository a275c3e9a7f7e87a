/*
 * shardcmd.h - the control thread's mailbox into a shard: one command at a
 * time (list the connections matching a filter, close one connection, close
 * every connection of a user), executed by the shard on its own thread at
 * its next loop turn, touching only its own connections.
 *
 * The control thread posts (shardcmd_call()), rings the shard's eventfd and
 * waits for the answer, bounded by SHARDCMD_WAIT_MS: a shard that exited or
 * does not answer in time is reported as late, never waited for longer.
 * Shards never wait: they take the command with one atomic exchange and
 * publish the answer with a release store. A command the control thread
 * gave up on is freed by whichever side is last to let go of it (the state
 * word says who), so neither side ever touches freed memory.
 */
#ifndef RINGSOCKS_SHARDCMD_H
#define RINGSOCKS_SHARDCMD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "conn_end.h"

struct shard;
struct conn;
struct uacct;

/* How long the control thread waits for each shard's answer. */
#define SHARDCMD_WAIT_MS       1000
/* GET /connections: objects listed by default and at most. */
#define SHARDCMD_LIMIT_DEFAULT 1000
#define SHARDCMD_LIMIT_MAX     100000
/* Longest user name or destination text a filter holds (with the NUL). */
#define SHARDCMD_TEXT_MAX      256

enum shardcmd_op {
    SHARDCMD_LIST = 1,   /* render the connections matching f, at most limit */
    SHARDCMD_CLOSE,      /* close the connection slot.gen (with why) */
    SHARDCMD_CLOSE_USER, /* close every connection of acct, or of user when c->acct is NULL */
};

/* Which connections a list shows. Empty fields match everything. */
struct shardcmd_filter {
    char user[SHARDCMD_TEXT_MAX]; /* exact base user name */
    union sockaddr_inx client;    /* the client's IP (family 0: any) ... */
    bool client_port;             /* ... and its port too */
    char dest[SHARDCMD_TEXT_MAX]; /* a substring of the "host:port" text */
};

struct shardcmd {
    /* The request, set before the post and read-only after it. */
    enum shardcmd_op op;
    struct shardcmd_filter f;     /* LIST */
    size_t limit;                 /* LIST: objects at most */
    uint32_t slot, gen;           /* CLOSE */
    struct uacct *acct;           /* CLOSE_USER: the user's entry (NULL: by name only) */
    char user[SHARDCMD_TEXT_MAX]; /* CLOSE_USER: its base name */
    enum conn_end why;            /* CLOSE, CLOSE_USER */

    /* The answer, written by the shard before it stores SHARDCMD_DONE. */
    char *out;      /* LIST: JSON objects, '\n' between them, NUL-ended (malloc'ed), or NULL */
    size_t len;     /* LIST: bytes in out */
    size_t n;       /* LIST: objects in out; CLOSE, CLOSE_USER: connections closed */
    bool truncated; /* LIST: more connections matched than limit */
    int err;        /* 0, or -ENOMEM: the list is cut short */

    _Atomic int state; /* enum in shardcmd.c: posted, done, abandoned */
};

/*
 * Control thread. Post a copy of proto to each of the n shards, ring them,
 * and wait until every one answered or SHARDCMD_WAIT_MS passed (for all of
 * them together). ans[i]: shard i's answered command (free it with
 * shardcmd_free()), or NULL when it exited, was late, or memory ran out.
 * wake rings a shard (shard_wake(): passed in, so that this module, which
 * the shard's loop calls, does not call up into the shard's). Returns how
 * many answered.
 */
unsigned shardcmd_call(struct shard *shards, unsigned n, const struct shardcmd *proto,
                       struct shardcmd **ans, void (*wake)(struct shard *sh));
void shardcmd_free(struct shardcmd *cmd);

/* Shard thread, once per loop turn: execute the posted command, if any, and answer it. */
void shardcmd_run(struct shard *sh);

/* ---- pure parts, for the tests and the shard */

/*
 * The query string of GET /connections (user, client, dest, limit;
 * percent-decoded) into cmd->f and cmd->limit (SHARDCMD_LIMIT_DEFAULT when
 * not given). NULL, or what is wrong with it (static, or written into why):
 * a malformed pair, an unknown or repeated parameter, a client that is not
 * an IP or IP:PORT, a limit not in 0..SHARDCMD_LIMIT_MAX.
 */
const char *shardcmd_parse_query(const char *query, struct shardcmd *cmd, char *why, size_t cap);
/* A connection id "SHARD.SLOT.GEN": three decimal uint32_t, no sign, space or other byte. */
bool shardcmd_parse_id(const char *s, uint32_t part[3]);

/*
 * c's destination as "host:port" (an IPv6 literal in brackets) into out
 * (cap >= SHARDCMD_TEXT_MAX + 16); false when it asked for none yet.
 */
bool shardcmd_dest_text(const struct conn *c, char *out, size_t cap);
/* Does c (its destination text dest, NULL: none) match f? */
bool shardcmd_match(const struct conn *c, const char *dest, const struct shardcmd_filter *f);
/*
 * c on shard shard_id as the JSON object of GET /connections, into out;
 * now_ms is the wall clock (ms since the epoch) its age is counted to.
 * Returns the length (cut to cap - 1 and NUL-ended; 4096 always holds it).
 */
size_t shardcmd_render(const struct conn *c, unsigned shard_id, uint64_t now_ms, char *out,
                       size_t cap);

#endif
