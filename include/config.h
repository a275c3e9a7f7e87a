/*
 * config.h - the configuration file (libconfig syntax): every command-line
 * setting plus access rules, logging, the admin endpoint and privilege
 * drop. Control and main threads only; never on a shard.
 *
 * The keys besides rules, their kinds, ranges and defaults are the rows of
 * options.h; this module reads the file's syntax, the rules and reports
 * every error as FILE:LINE.
 *   rules = (
 *     { action = "deny";  to = ["10.0.0.0/8", "169.254.0.0/16"]; },
 *     { action = "allow"; from = ["127.0.0.0/8", "::1"]; ports = ["80", "443", "8000-8999"];
 *       commands = ["connect", "udp"]; users = ["alice"]; }
 *   );
 * A file without a rules list gets the default rules: allow clients from
 * 127.0.0.0/8 and ::1, deny everyone else (never an open proxy by accident).
 * Unknown keys and wrong types are errors, so a typo is never silently
 * ignored.
 */
#ifndef RINGSOCKS_CONFIG_H
#define RINGSOCKS_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "acl.h"
#include "opts.h"

struct users;

/*
 * Read path into *o (which holds the defaults on entry; keys present in the
 * file overwrite them) and build its rules into a new *acl. On failure
 * returns -1, leaves *o and *acl unchanged, and writes every error found,
 * one per line as "FILE:LINE: message", into err (truncated to errlen).
 * Returns 0 on success, with the warnings ("FILE:LINE: warning: ...", one
 * per line) in err, or err empty.
 */
int config_load(const char *path, struct opts *o, struct acl **acl, char *err, size_t errlen);

/* The rules used without a configuration file: loopback clients only. */
struct acl *config_default_acl(void);

/*
 * -T: write the rules of path (NULL: no file) to f in the file's syntax, as
 * they are in force: the built-in ones when there is no file or no rules key.
 * 0, or -1 when the file no longer parses.
 */
int config_print_rules(const char *path, FILE *f);

/*
 * -t: a warning ("FILE:LINE: warning: rule N: user 'x' is not in the users
 * file ...") into warn for every user a rule of path names that users (NULL:
 * no users file) does not hold. Returns how many; -1 when the file no
 * longer parses.
 */
int config_check_rule_users(const char *path, const struct users *users, char *warn, size_t cap);

/*
 * -t: "FILE:LINE: " of the top-level string setting key in the file at path
 * when it holds value (so a value the command line overrode is not pinned on
 * the file), else "". Written into buf (cap bytes); returns buf.
 */
const char *config_key_where(const char *path, const char *key, const char *value, char *buf,
                             size_t cap);

#endif
