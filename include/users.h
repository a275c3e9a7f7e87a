/*
 * users.h - the user table: RFC 1929 names and their crypt(3) hashes.
 *
 * Loaded by the main (control) thread, at start and on every reload, into
 * the policy snapshot; read-only afterwards, shared by every shard. The
 * credential check itself (cache, crypt worker, queues) is authq.h.
 */
#ifndef RINGSOCKS_USERS_H
#define RINGSOCKS_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct users;

/*
 * Main thread: load "user:hash [attributes]" lines ('#' comments and blank lines
 * allowed). On error returns NULL and writes "FILE:LINE: message" to err.
 */
struct users *users_load(const char *path, char *err, size_t errlen);
/*
 * The same with flags: USERS_F_PARAMS refuses names holding a parameter
 * keyword of username_params ("-session-", "-ttl-"). A line may carry
 * attributes after the hash, "key=value" words separated by blanks:
 *     alice:$y$...  egress=2001:db8:1::/64,203.0.113.7
 * An unknown attribute or a bad value is an error at its line.
 */
#define USERS_F_PARAMS 0x01u
struct users *users_load_flags(const char *path, unsigned flags, char *err, size_t errlen);
/* The same from text in memory (a table fetched from Redis); label names it in errors. */
struct users *users_load_text(const char *label, const char *text, unsigned flags, char *err,
                              size_t errlen);
void users_free(struct users *u);
/* Any thread: the crypt hash of user, or NULL. */
const char *users_hash(const struct users *u, const char *user);
size_t users_count(const struct users *u);
struct egress_pool;
/* Any thread: the egress pool of user's line, or NULL (none, or no such user). */
const struct egress_pool *users_egress(const struct users *u, const char *user);
/* Any thread: everything a user's line says, found once. */
struct lim_conf;
struct uacct;
struct users_info {
    const char *hash;
    const struct egress_pool *egress; /* NULL: none */
    const struct lim_conf *lim;       /* the line's limits; unset fields: the defaults */
    struct uacct *acct;               /* its running state; NULL before users_link() */
};
/* false: no such user (or no table). */
bool users_info(const struct users *u, const char *user, struct users_info *out);
/*
 * Control thread, after loading: point every user at its entry of reg
 * (acct.h), making the missing ones. 0 or -ENOMEM.
 */
struct acct_reg;
int users_link(struct users *u, struct acct_reg *reg);
/* Any thread: the i-th name in strcmp() order (the reload report walks two tables), or NULL. */
const char *users_name(const struct users *u, size_t i);

/*
 * Any thread: the hash an unknown user name is checked against (then always
 * refused), of the algorithm and cost most entries have, or NULL when the
 * table is empty (or no entry's hash is usable).
 */
const char *users_dummy(const struct users *u);
/*
 * Pure: the length of hash's "class", the part that names algorithm and
 * cost and not the salt: "$y$j9T" of "$y$j9T$salt$hash", "$2b$12" of
 * bcrypt, "$6$rounds=N" or "$6".
 */
size_t users_hash_class_len(const char *hash);

#endif
