/*
 * preflight.c - the checks of `ringsocks -t` that need the system rather
 * than the text: users and groups, directories, who may read and write
 * what. What start or a later reload would fail on is said here, before
 * the service is started or reloaded.
 *
 * Main thread only, and only before other threads exist: preflight_access()
 * forks, and the child changes its identity.
 */
#include "preflight.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "options.h"

int
preflight_identity(const struct opts *o, struct preflight_id *id, char *why, size_t whycap)
{
    id->uid = geteuid();
    id->gid = getegid();
    id->change = o->user[0] || o->group[0];
    id->bad = NULL;
    if (o->group[0]) {
        struct group *gr = getgrnam(o->group);
        if (!gr) {
            snprintf(why, whycap, "group '%s' does not exist", o->group);
            id->bad = "group";
            return -ENOENT;
        }
        id->gid = gr->gr_gid;
    }
    if (o->user[0]) {
        struct passwd *pw = getpwnam(o->user);
        if (!pw) {
            snprintf(why, whycap, "user '%s' does not exist", o->user);
            id->bad = "user";
            return -ENOENT;
        }
        id->uid = pw->pw_uid;
        if (!o->group[0])
            id->gid = pw->pw_gid;
    }
    return 0;
}

int
preflight_access(const struct preflight_id *id, const char *path, int mode)
{
    if (!id->change || (id->uid == geteuid() && id->gid == getegid() && geteuid() != 0)) {
        if (faccessat(AT_FDCWD, path, mode, AT_EACCESS) == -1)
            return -errno;
        return 0;
    }
    /* The identity main() drops to (drop_privileges: one group, no supplementary ones). */
    pid_t pid = fork();
    if (pid == -1)
        return -errno;
    if (pid == 0) {
        if (setgroups(1, &id->gid) == -1 || setgid(id->gid) == -1 || setuid(id->uid) == -1)
            _exit(EPERM);
        _exit(access(path, mode) == 0 ? 0 : (errno & 0xff));
    }
    int st;
    while (waitpid(pid, &st, 0) == -1)
        if (errno != EINTR)
            return -errno;
    if (!WIFEXITED(st))
        return -ECHILD;
    return -WEXITSTATUS(st);
}

/*
 * One line more into out (cap bytes, *used written), led by the FILE:LINE of
 * the key it is about when the file set it (AT(key, value)):
 * SAY(out, AT("user", o->user), "...", ...).
 */
#define SAY(out, at, fmt, ...) \
    options_append(out, cap, used, "%s%s" fmt, *used ? "\n" : "", at, __VA_ARGS__)
#define AT(key, value) config_key_where(config, key, value, where, sizeof(where))

/* "uid 65534 (user nobody)": who a message is about. */
static const char *
who(const struct opts *o, const struct preflight_id *id, char *buf, size_t cap)
{
    if (o->user[0])
        snprintf(buf, cap, "user %s", o->user);
    else if (o->group[0])
        snprintf(buf, cap, "uid %u, group %s", (unsigned)id->uid, o->group);
    else
        snprintf(buf, cap, "uid %u (the current user)", (unsigned)id->uid);
    return buf;
}

/* The access log file: its directory must exist, and the service user must create files in it. */
static unsigned
check_log(const struct opts *o, const char *config, const struct preflight_id *id, char *out,
          size_t cap, size_t *used)
{
    char dir[sizeof(o->access_log)], w[128], where[PATH_MAX + 16];
    struct stat st;
    if (o->access_log[0] != '/')
        return 0;
    snprintf(dir, sizeof(dir), "%s", o->access_log);
    char *slash = strrchr(dir, '/');
    slash[slash == dir ? 1 : 0] = '\0';
    if (stat(dir, &st) == -1 || !S_ISDIR(st.st_mode)) {
        SAY(out, AT("access_log", o->access_log), "access_log: the directory %s %s", dir,
            errno == ENOENT ? "does not exist" : "is not a directory");
        return 1;
    }
    int ret = preflight_access(id, dir, W_OK | X_OK);
    if (ret < 0) {
        SAY(out, AT("access_log", o->access_log),
            "access_log: %s cannot create files in %s (%s): the log cannot be reopened "
            "after logrotate (SIGUSR1)",
            who(o, id, w, sizeof(w)), dir, strerror(-ret));
        return 1;
    }
    if (stat(o->access_log, &st) == 0 && (ret = preflight_access(id, o->access_log, W_OK)) < 0) {
        SAY(out, AT("access_log", o->access_log), "access_log: %s cannot write %s (%s)",
            who(o, id, w, sizeof(w)), o->access_log, strerror(-ret));
        return 1;
    }
    return 0;
}

unsigned
preflight_check(const struct opts *o, const char *config, char *out, size_t cap)
{
    struct preflight_id id;
    char why[256], w[128], where[PATH_MAX + 16];
    unsigned errs = 0;
    size_t len = strlen(out), *used = &len;
    if (preflight_identity(o, &id, why, sizeof(why)) < 0) {
        SAY(out, AT(id.bad, id.bad[0] == 'u' ? o->user : o->group), "%s", why);
        return 1;
    }
    /* drop_privileges() calls setgroups(), which needs root even for one's own ids. */
    if (id.change && geteuid() != 0) {
        const char *key = o->user[0] ? "user" : "group";
        SAY(out, AT(key, o->user[0] ? o->user : o->group),
            "%s: only root can drop privileges (running as uid %u); leave user and "
            "group unset",
            key, (unsigned)geteuid());
        return 1;
    }
    errs += check_log(o, config, &id, out, cap, used);
    /* Started by SIGUSR2 as the service user. */
    if (o->upgrade_binary[0]) {
        int ret = preflight_access(&id, o->upgrade_binary, X_OK);
        if (ret < 0) {
            SAY(out, AT("upgrade_binary", o->upgrade_binary),
                "upgrade_binary: %s cannot execute %s (%s): an upgrade would fail",
                who(o, &id, w, sizeof(w)), o->upgrade_binary, strerror(-ret));
            errs++;
        }
    }
    /* Read again on every reload, after the drop. */
    const char *files[][2] = {{"users", o->users_file}, {"configuration file", config}};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (!files[i][1] || !files[i][1][0])
            continue;
        int ret = preflight_access(&id, files[i][1], R_OK);
        if (ret < 0) {
            SAY(out, i == 0 ? AT("users", files[i][1]) : "",
                "%s: %s cannot read %s (%s): a reload would fail", files[i][0],
                who(o, &id, w, sizeof(w)), files[i][1], strerror(-ret));
            errs++;
        }
    }
    return errs;
}
