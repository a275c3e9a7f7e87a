/*
 * preflight.h - what `ringsocks -t` checks beyond the files' syntax: the
 * things start, or a reload after the privilege drop, would fail on. The
 * user and group to drop to exist; the access log's directory exists and
 * the service user may create the log in it (SIGUSR1 reopens it after the
 * drop); the configuration and users files are readable by that user (a
 * reload re-reads them as that user).
 *
 * Main thread only, before any other thread exists: the checks for
 * another user run in a child process that becomes that user.
 */
#ifndef RINGSOCKS_PREFLIGHT_H
#define RINGSOCKS_PREFLIGHT_H

#include <stddef.h>
#include <sys/types.h>

#include "opts.h"

/* Who the service runs as after the privilege drop. */
struct preflight_id {
    uid_t uid;
    gid_t gid;
    bool change;     /* user or group is set: the drop happens */
    const char *bad; /* after -ENOENT: "user" or "group", the key that names no one */
};

/*
 * The identity o's user and group name (the group defaults to the user's
 * primary group; neither set: the current user, no change). 0, or -ENOENT
 * with "user 'x' does not exist" (or the group) in why.
 */
int preflight_identity(const struct opts *o, struct preflight_id *id, char *why, size_t whycap);

/*
 * Can id reach path with mode (R_OK, W_OK, X_OK, as access(2))? 0 or
 * -errno. For an identity other than the current one, a child process
 * takes it and asks the kernel, so ACLs and mounts count.
 */
int preflight_access(const struct preflight_id *id, const char *path, int mode);

/*
 * Every check, errors one per line ("access_log: ... ") into out (cap
 * bytes, appended after what it holds). config: the file -c named, or NULL.
 * Returns the number of errors.
 */
unsigned preflight_check(const struct opts *o, const char *config, char *out, size_t cap);

#endif
