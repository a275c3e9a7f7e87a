/*
 * addrsets.h - named sets of networks for the rules' from and to lists: the
 * built-in ones ("@special", "@private", "@loopback", "@metadata") and the
 * ones a configuration file defines (address_sets = { office = [...]; };),
 * which may name other sets.
 *
 * A set is expanded when the rules are built: the rule holds the networks
 * themselves (acl_add() copies them), so matching costs nothing new and a
 * set that changes between versions changes only what a reload builds.
 *
 * Pure code: no file, socket or thread of its own. Called by config.c on the
 * main thread at start and on the control thread on reload; never on a shard.
 *
 * IPv4-mapped IPv6 addresses (::ffff:0:0/96) are in no set: acl.h matches a
 * mapped address as the IPv4 address it carries, so ::ffff:127.0.0.1 is in
 * "@loopback" through 127.0.0.0/8, and a /96 entry would be stored as
 * 0.0.0.0/0 (every IPv4 address).
 */
#ifndef RINGSOCKS_ADDRSETS_H
#define RINGSOCKS_ADDRSETS_H

#include <stdbool.h>
#include <stddef.h>

#include "acl.h"

/* A set's name (without the '@'): a letter, then letters, digits, '_' or '-'. */
#define ADDRSETS_NAME_MAX 63

/* One network of a built-in set, with what it is and where that is written. */
struct addrsets_net {
    const char *cidr; /* as acl_cidr_parse() reads it */
    const char *what; /* "private-use (RFC 1918)" */
};

struct addrsets_builtin {
    const char *name;  /* "special", without the '@' */
    const char *about; /* one line */
    const struct addrsets_net *nets;
    size_t n;
};

/* The built-in sets, in the order the documentation lists them. */
extern const struct addrsets_builtin addrsets_builtins[];
extern const size_t addrsets_n_builtins;

/* The built-in set called name (without the '@'), or NULL. */
const struct addrsets_builtin *addrsets_builtin(const char *name);

/* The user-defined sets of one configuration file, over the built-in ones. */
struct addrsets;

/* An empty table. NULL when out of memory. */
struct addrsets *addrsets_new(void);
/* NULL is ignored. */
void addrsets_free(struct addrsets *s);

/*
 * Define set name (without the '@') with n members, each a network
 * ("198.51.100.0/24", "2001:db8::1") or another set ("@lab"); tag is handed
 * back with a problem of the set itself, tags[i] with one of member i (the
 * caller's handles, e.g. where they are written). The member array and tags
 * are copied; the strings and what the tags point to must outlive s.
 * Returns 0, -EEXIST (defined already, or a built-in name), -EINVAL (not a
 * name, see ADDRSETS_NAME_MAX) or -ENOMEM. Members are checked by
 * addrsets_check(), once every set is defined.
 */
int addrsets_define(struct addrsets *s, const char *name, const void *tag,
                    const char *const *members, const void *const *tags, size_t n);

enum addrsets_problem {
    ADDRSETS_BAD_NET, /* a member is neither a network (with zero host bits) nor "@name" */
    ADDRSETS_UNKNOWN, /* a member names no set */
    ADDRSETS_CYCLE,   /* a member leads back to its own set: path says how */
    ADDRSETS_EMPTY,   /* the set has no member: in a rule it would stand for no condition */
};

/*
 * A problem of set `set`: tag is the member's (the set's own for
 * ADDRSETS_EMPTY), member its text (NULL for ADDRSETS_EMPTY), path the
 * cycle "a -> b -> a" for ADDRSETS_CYCLE, else NULL.
 */
typedef void (*addrsets_report_fn)(void *arg, enum addrsets_problem p, const char *set,
                                   const char *member, const void *tag, const char *path);

/*
 * Check every defined set, each problem reported once (a cycle at the
 * member that closes it). Returns the number of problems.
 */
unsigned addrsets_check(const struct addrsets *s, addrsets_report_fn report, void *arg);

/*
 * One entry of a rule's list: a network, or "@name" (a user set of s, s may
 * be NULL, or a built-in one), expanded through the sets it names. Calls
 * add for each network, in order (a network named twice comes twice).
 * Returns 0; -EINVAL for an entry that is not a network, or a set holding
 * one; -ENOENT for a name that is no set (at any depth); -ELOOP for a cycle
 * (addrsets_check() reports these with their place); or add's negative
 * return.
 */
int addrsets_expand(const struct addrsets *s, const char *entry,
                    int (*add)(void *arg, const struct acl_cidr *net), void *arg);

/* Is name (without the '@') a set of s (s may be NULL) or a built-in one? */
bool addrsets_known(const struct addrsets *s, const char *name);

#endif
