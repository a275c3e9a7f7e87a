/*
 * main.c - options, start and stop order; the only place that exits.
 *
 * Start: read the settings (defaults, file, command line: options.c and
 * config.c), check them for -t and -T (preflight.c), raise RLIMIT_NOFILE and
 * RLIMIT_MEMLOCK, bind every listener once per shard (SO_REUSEPORT), open the
 * files, drop privileges and every capability the configuration does not need
 * at run time (caps.h; before any other thread starts: the sets are per
 * thread), start the access log's writer and the shards with every signal
 * blocked, install the seccomp filter (sandbox.h: from here on only the calls
 * of src/sandbox_syscalls.h), report the addresses. Then the main thread
 * becomes the control thread (ctl_run(): signals, reload, drain,
 * the admin endpoint) until a stop or the end of a drain; then the shards
 * are stopped and joined, and main() returns 0.
 */
#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "caps.h"
#include "dns.h"
#include "gssacc.h"
#include "hosts.h"
#include "opts.h"
#include "shard.h"
#include "sock.h"
#include "socks5.h"
#include "users.h"
#include "transparent.h"
#include "version.h"
#include "acl.h"
#include "admin.h"
#include "config.h"
#include "acct.h"
#include "climap.h"
#include "fleet.h"
#include "acctctl.h"
#include "ctl.h"
#include "lockout.h"
#include "log.h"
#include "notify.h"
#include "options.h"
#include "policy.h"
#include "preflight.h"
#include "sandbox.h"
#include "upgrade.h"

#define LISTEN_BACKLOG 4096

/* Raise the soft fd limit to the hard one; returns the limit in force. */
static rlim_t
raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

/*
 * io_uring counts the shards' registered handshake buffers (about 10 MiB per shard)
 * against RLIMIT_MEMLOCK, unless the ring was made with CAP_IPC_LOCK, which the drop
 * after start-up takes away (caps.h). While the process may (CAP_SYS_RESOURCE: root), the
 * limit becomes unlimited, as root's rings were before; otherwise the soft limit rises to
 * the hard one. A shard the limit refuses uses plain recv/send for handshakes.
 */
static void
raise_memlock(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
        return;
    struct rlimit all = {RLIM_INFINITY, RLIM_INFINITY};
    if (setrlimit(RLIMIT_MEMLOCK, &all) == -1 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_MEMLOCK, &rl);
    }
}

/*
 * A SOCKS client speaks first: its connection may wait in the kernel until its greeting is
 * there (defer_accept), so that the accept finds the bytes and the first read needs no poll.
 * Never on a transparent listener: the programs it carries may wait for the server to speak.
 * Also on the sockets of a hand-over, which keep the old process's setting otherwise (0
 * turns it off, as on a transparent listener that was a SOCKS one before the upgrade).
 */
static void
listener_defer(int fd, unsigned seconds)
{
    int secs = (int)seconds;
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs));
}

static int
listen_one(const struct sockaddr *sa, bool reuseport, bool transparent, const struct opts *o)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
        goto fail;
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* Accepted sockets inherit TCP_NODELAY, keepalive and the user timeout from the
     * listener: no setsockopt per client. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sock_set_liveness(fd, o);
    /* tproxy hands connections only to a socket that has it (before bind: it also lets
     * the socket bind an address that is not local). Without the privilege only
     * redirect reaches the listener: said once, by transparent_listeners(). */
    if (transparent)
        transparent_set(fd, sa->sa_family, true);
    else if (o->defer_accept_s)
        listener_defer(fd, o->defer_accept_s);
    if (bind(fd, sa, addr_len(sa)) == -1)
        goto fail;
    if (reuseport && listen(fd, LISTEN_BACKLOG) == -1)
        goto fail;
    return fd;
fail:;
    int err = -errno;
    close(fd);
    return err;
}

/*
 * An upgrade (upgrade.h): take the sockets the old process listens on at the
 * address of listen i, one per shard, into fds; the address gets the port
 * they are bound to (the command line's port 0 stays the same port). true
 * when every shard got one; false (and none taken) when the address is new.
 */
static bool
take_listeners(struct opts *o, unsigned i, int *fds, struct upgrade_fd *handed, size_t n_handed)
{
    struct sockaddr *sa = (struct sockaddr *)&o->listen[i];
    for (unsigned s = 0; s < o->shards; s++) {
        int fd = upgrade_take(handed, n_handed, UPGRADE_FD_LISTEN, sa, NULL, s);
        if (fd < 0) {
            if (s)
                fprintf(stderr, "ringsocks: upgrade: %u of %u sockets of a listener handed over\n",
                        s, o->shards);
            return false; /* the caller closes what was taken */
        }
        fds[s * o->n_listen + i] = fd;
        /* 0 on a transparent one: it may have been a SOCKS listener of the old process. */
        listener_defer(fd, o->listen_transparent[i] ? 0 : o->defer_accept_s);
        if (s == 0) {
            socklen_t len = sizeof(o->listen[i]);
            getsockname(fd, sa, &len);
        }
    }
    return true;
}

/*
 * Which listeners are mode = "transparent": their groups', matched by address as
 * configured (before a port 0 is resolved), as the policy matches them.
 */
static void
transparent_mark(struct opts *o)
{
    for (unsigned i = 0; i < o->n_listen; i++) {
        o->listen_transparent[i] = false;
        for (unsigned k = 0; k < o->n_listen_out; k++)
            if (memcmp(&o->listen_out[k].addr, &o->listen[i], sizeof(o->listen[i])) == 0)
                o->listen_transparent[i] = o->listen_out[k].transparent;
    }
}

/*
 * After binding (or a hand-over, whose sockets keep the old process's setting): every
 * transparent listener's socket has IP_TRANSPARENT, every other none. Setting it needs
 * CAP_NET_ADMIN (or CAP_NET_RAW); without it a transparent listener still takes
 * redirected connections, not tproxy's, and the operator is told.
 */
static void
transparent_listeners(const struct opts *o, const int *fds)
{
    char text[ADDR_STRLEN];
    for (unsigned i = 0; i < o->n_listen; i++) {
        const struct sockaddr *sa = (const struct sockaddr *)&o->listen[i];
        bool want = o->listen_transparent[i];
        for (unsigned s = 0; s < o->shards; s++) {
            int fd = fds[s * o->n_listen + i];
            if (fd < 0 || transparent_is_set(fd, sa->sa_family) == want)
                continue;
            int ret = transparent_set(fd, sa->sa_family, want);
            if (ret < 0) {
                fprintf(stderr,
                        "ringsocks: warning: listen %s: cannot set IP_TRANSPARENT (%s): "
                        "nftables tproxy will not reach it, redirect still does\n",
                        addr_format(sa, text, sizeof(text)), strerror(-ret));
                break;
            }
        }
    }
}

/*
 * fds[shard * n_listen + i]: one socket per listen address per shard, taken
 * from handed (an upgrade) where the old process listened on the address,
 * else bound here. A probe without SO_REUSEPORT first, so a port held by
 * anyone (even another ringsocks of the same user, which SO_REUSEPORT would
 * silently share with) is reported as in use; it also fixes the port when 0
 * was asked for.
 */
static int
bind_all(struct opts *o, int *fds, struct upgrade_fd *handed, size_t n_handed)
{
    char text[ADDR_STRLEN];
    for (unsigned i = 0; i < o->n_listen; i++) {
        struct sockaddr *sa = (struct sockaddr *)&o->listen[i];
        if (handed) {
            if (take_listeners(o, i, fds, handed, n_handed))
                continue;
            for (unsigned s = 0; s < o->shards; s++)
                if (fds[s * o->n_listen + i] >= 0) {
                    close(fds[s * o->n_listen + i]);
                    fds[s * o->n_listen + i] = -1;
                }
            fprintf(stderr, "ringsocks: upgrade: %s is new: bound here\n",
                    addr_format(sa, text, sizeof(text)));
        }
        int probe = listen_one(sa, false, o->listen_transparent[i], o);
        if (probe < 0) {
            fprintf(stderr, "ringsocks: cannot listen on %s: %s\n",
                    addr_format(sa, text, sizeof(text)), strerror(-probe));
            return -1;
        }
        socklen_t len = sizeof(o->listen[i]);
        getsockname(probe, sa, &len);
        close(probe);
        for (unsigned s = 0; s < o->shards; s++) {
            int fd = listen_one(sa, true, o->listen_transparent[i], o);
            if (fd < 0) {
                fprintf(stderr, "ringsocks: cannot listen on %s: %s\n",
                        addr_format(sa, text, sizeof(text)), strerror(-fd));
                return -1;
            }
            fds[s * o->n_listen + i] = fd;
        }
    }
    return 0;
}

/* What a reload re-reads: the command line as started, and the file it named. */
struct loader {
    int argc;
    char **argv;
    const char *config;
    struct acct_reg *reg; /* users' running state (acct.h): users_link() into it */
    struct fleet *fleet;  /* redis_users: the table fetched from Redis, once it answered */
};

/*
 * The admin token, read at start and on every reload (a bad file fails the
 * whole load: the old token stays), and the rule that an admin endpoint
 * beyond loopback has one. 0, or -1 with the error in err.
 */
static int
load_admin_token(const struct loader *ld, struct opts *o, char *err, size_t errlen)
{
    char where[PATH_MAX + 16], text[ADDR_STRLEN], why[PATH_MAX + 256];
    o->has_admin_token = false;
    if (o->admin_token_file[0]) {
        if (admin_token_read(o->admin_token_file, o->admin_token, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%sadmin_token_file %s",
                     config_key_where(ld->config, "admin_token_file", o->admin_token_file, where,
                                      sizeof(where)),
                     why);
            return -1;
        }
        o->has_admin_token = true;
    }
    if (admin_needs_token((struct sockaddr *)&o->admin) && !o->has_admin_token) {
        addr_format((struct sockaddr *)&o->admin, text, sizeof(text));
        snprintf(err, errlen,
                 "%sadmin %s listens beyond this host without a token: anyone who reaches it "
                 "could reload, drain and read the metrics. Set admin_token_file (requests then "
                 "carry Authorization: Bearer), use admin_socket, or listen on 127.0.0.1",
                 config_key_where(ld->config, "admin", text, where, sizeof(where)), text);
        return -1;
    }
    return 0;
}

/*
 * defaults -> file -> command line, then the users file and the rules, into
 * a new policy snapshot. Nothing is kept on failure; every error is in err.
 */
static int
load_all(void *arg, struct opts *o, struct policy **pol, uint64_t gen, char *err, size_t errlen)
{
    const struct loader *ld = arg;
    struct acl *acl = NULL;
    struct users *users = NULL;
    struct options_cli cli = {0};

    options_defaults(o);
    if (ld->config) {
        if (config_load(ld->config, o, &acl, err, errlen) < 0)
            return -1;
        if (err[0])
            fprintf(stderr, "%s\n", err); /* warnings: the file is still good */
    } else {
        acl = config_default_acl();
        if (!acl) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    if (options_apply_args(ld->argc, ld->argv, o, &cli, err, errlen) < 0) {
        acl_free(acl);
        return -1;
    }
    if (load_admin_token(ld, o, err, errlen) < 0) {
        acl_free(acl);
        return -1;
    }
    if (o->redis_users && !o->redis[0]) {
        snprintf(err, errlen, "redis_users = true needs redis = \"IP:PORT\" (or unix:PATH)");
        acl_free(acl);
        return -1;
    }
    bool password = options_auth_has(o, SOCKS5_METHOD_PASSWORD);
    bool gssapi = options_auth_has(o, SOCKS5_METHOD_GSSAPI);
    for (unsigned i = 0; (password || gssapi) && i < o->n_listen_out; i++) {
        const struct opts_listen_out *lo = &o->listen_out[i];
        if (!lo->transparent || lo->auth_none)
            continue;
        char a[ADDR_STRLEN];
        addr_format((const struct sockaddr *)&lo->addr, a, sizeof(a));
        snprintf(err, errlen,
                 "listen %s: mode = \"transparent\" under auth = \"%s\": its clients "
                 "cannot authenticate, so the rules alone would admit them; write auth = "
                 "\"none\" in that listener to mean it (and let the rules' from name who may)",
                 a, o->auth);
        acl_free(acl);
        return -1;
    }
    if (password && !o->users_file[0] && !o->redis_users) {
        snprintf(err, errlen,
                 "auth = password needs a users file (--users or users = \"...\") or "
                 "redis_users = true");
        acl_free(acl);
        return -1;
    }
    /* redis_users: Redis's table once it answered (fleet.h); the users file until then. */
    const char *fleet_users = o->redis_users ? fleet_users_text(ld->fleet) : NULL;
    char label[sizeof(o->redis_prefix) + 16];
    snprintf(label, sizeof(label), "redis:%susers", o->redis_prefix);
    if (fleet_users || o->users_file[0]) {
        unsigned uflags = o->username_params ? USERS_F_PARAMS : 0;
        users = fleet_users ? users_load_text(label, fleet_users, uflags, err, errlen)
                            : users_load_flags(o->users_file, uflags, err, errlen);
        if (!users) {
            acl_free(acl);
            return -1;
        }
        if (ld->reg && users_link(users, ld->reg) < 0) {
            snprintf(err, errlen, "%s: out of memory", fleet_users ? label : o->users_file);
            acl_free(acl);
            users_free(users);
            return -1;
        }
    }
    /* The keytab is read here, on the control thread (at start: the main thread), never
     * on a shard; a keytab without the service's keys fails the start or the reload. */
    struct gssacc_cred *cred = NULL;
    if (gssapi) {
        char why[GSSACC_ERR_MAX];
        if (gssacc_cred_open(&cred, o->gss_service, o->gss_keytab[0] ? o->gss_keytab : NULL, why,
                             sizeof(why)) < 0) {
            snprintf(err, errlen, "gss_keytab %s, gss_service \"%s\": %s",
                     o->gss_keytab[0] ? o->gss_keytab : "(the library's default)", o->gss_service,
                     why);
            acl_free(acl);
            users_free(users);
            return -1;
        }
    }
    *pol = policy_new(o, acl, users, gen);
    if (!*pol) {
        acl_free(acl);
        users_free(users);
        gssacc_cred_free(cred);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    (*pol)->gss_cred = cred;
    return 0;
}

/* The admin endpoint on o->admin_socket, owned by the user and group run as. */
static struct admin *
open_admin_socket(const struct opts *o, char *err, size_t errlen)
{
    struct preflight_id id;
    if (preflight_identity(o, &id, err, errlen) < 0) {
        fprintf(stderr, "ringsocks: %s\n", err);
        return NULL;
    }
    struct admin *a =
        admin_open_unix(o->admin_socket, (unsigned)strtoul(o->admin_socket_mode, NULL, 8),
                        id.change, id.uid, id.gid, o->admin_hosts, err, errlen);
    if (!a) {
        fprintf(stderr, "ringsocks: admin endpoint: %s\n", err);
        return NULL;
    }
    admin_set_token(a, o->has_admin_token ? o->admin_token : NULL);
    return a;
}

/*
 * Write the PID to path atomically: a temporary file beside it, mode 0644,
 * renamed over it, so a reader never sees it half written. Before the
 * privilege drop, so it may live in /run. 0, or -1 after saying why.
 */
static int
pid_file_write(const char *path)
{
    char tmp[4096 + 16];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        fprintf(stderr, "ringsocks: pid_file %s: path too long\n", path);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd == -1) {
        fprintf(stderr, "ringsocks: pid_file %s: cannot create %s: %s\n", path, tmp,
                strerror(errno));
        return -1;
    }
    char text[32];
    int n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    /* fchmod: the umask must not make it unreadable to the tools that read it. */
    if (write(fd, text, (size_t)n) != n || fchmod(fd, 0644) == -1 || fsync(fd) == -1) {
        fprintf(stderr, "ringsocks: pid_file %s: cannot write %s: %s\n", path, tmp,
                strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) == -1) {
        fprintf(stderr, "ringsocks: pid_file %s: cannot rename %s to it: %s\n", path, tmp,
                strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Are the supplementary groups gid alone (what setgroups(1, &gid) made)? */
static bool
groups_only(gid_t gid)
{
    gid_t g[2];
    int n = getgroups(2, g);
    return n == 1 && g[0] == gid;
}

/*
 * Bind done, files open: become the configured user and group for good. keep_caps: the
 * permitted set survives setuid() (PR_SET_KEEPCAPS), for caps_apply() to cut it down to
 * what the configuration needs (caps.h). upgraded: a binary upgrade's new process, which
 * may run under its parent's seccomp filter (a supervisor's filter proves nothing).
 */
static int
drop_privileges(const struct opts *o, bool keep_caps, bool upgraded)
{
    struct preflight_id id;
    char why[256];
    if (preflight_identity(o, &id, why, sizeof(why)) < 0) {
        fprintf(stderr, "ringsocks: %s\n", why);
        return -1;
    }
    if (!id.change)
        return 0;
    /* Started by an upgrade from a process that dropped them already. A process under the
     * old one's seccomp filter may not call setgroups()/setgid()/setuid() at all, nor one
     * without CAP_SETUID (caps.h dropped it): with the identity already the one asked for
     * (root with a group, say), there is nothing to do. */
    bool same =
        getuid() == id.uid && geteuid() == id.uid && getgid() == id.gid && getegid() == id.gid;
    if (same && (id.uid != 0 || (upgraded && prctl(PR_GET_SECCOMP, 0L, 0L, 0L, 0L) == 2) ||
                 groups_only(id.gid)))
        return 0;
    if (keep_caps && id.uid != 0 && prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) == -1) {
        fprintf(stderr, "ringsocks: cannot keep capabilities through setuid(): %s\n",
                strerror(errno));
        return -1;
    }
    if (setgroups(1, &id.gid) == -1 || setgid(id.gid) == -1 || setuid(id.uid) == -1) {
        fprintf(stderr, "ringsocks: cannot drop privileges to %s:%s: %s\n",
                o->user[0] ? o->user : "-", o->group[0] ? o->group : "-", strerror(errno));
        return -1;
    }
    if (id.uid != 0 && setuid(0) == 0) {
        fprintf(stderr, "ringsocks: privileges could be regained after dropping them\n");
        return -1;
    }
    return 0;
}

/*
 * -t and -T, after the files loaded: what start or a reload would still fail
 * on (errors), and rules naming users the users file lacks (warnings). -T
 * then prints the configuration in force on stdout, so that
 * `ringsocks -T -c f > g` makes a file g that means the same as f with the
 * command line. Returns main's exit status: 0, or 1 for any error.
 */
static int
check_config(const struct options_cli *cli, const struct opts *o, const struct policy *pol)
{
    char out[8192] = "";
    const char *name = cli->config ? cli->config : "(no file)";
    FILE *say = cli->dump ? stderr : stdout;
    unsigned errs = preflight_check(o, cli->config, out, sizeof(out));
    if (errs) {
        fprintf(stderr, "%s\n", out);
        fprintf(stderr, "%s: %u error%s: start or a reload would fail\n", name, errs,
                errs == 1 ? "" : "s");
        return 1;
    }
    int warns = config_check_rule_users(cli->config, pol->users, out, sizeof(out));
    if (warns > 0)
        fprintf(stderr, "%s\n", out);
    fprintf(say, "%s: configuration ok (%zu rules, %zu users)\n", name, acl_count(pol->acl),
            users_count(pol->users));
    if (cli->dump) {
        printf("# ringsocks -T: the configuration in force (defaults, %s, the command line)\n",
               name);
        options_print(stdout, o);
        if (config_print_rules(cli->config, stdout) < 0)
            return 1;
    }
    return 0;
}

/* Rings every shard: leases moved (fleet.h). */
static void
wake_shards(void *arg)
{
    const struct ctl *ctl = arg;
    for (unsigned i = 0; i < ctl->n_shards; i++)
        shard_wake(&ctl->shards[i]);
}

/* The fleet of o->redis (before the privilege drop: the password file may be root's). */
static struct fleet *
fleet_start(const struct opts *o, struct acct_reg *reg, struct ctl *ctl, const char *config)
{
    struct fleet_conf fc = {.interval_ms = o->redis_interval_ms,
                            .fail_open = o->redis_fallback == 0,
                            .users = o->redis_users};
    char err[512], where[PATH_MAX + 16];
    if (fleet_parse_addr(o->redis, &fc.addr, err, sizeof(err)) < 0) {
        fprintf(stderr, "ringsocks: %sredis %s\n",
                config_key_where(config, "redis", o->redis, where, sizeof(where)), err);
        return NULL;
    }
    snprintf(fc.prefix, sizeof(fc.prefix), "%s", o->redis_prefix);
    if (o->redis_node[0])
        snprintf(fc.node, sizeof(fc.node), "%s", o->redis_node);
    else if (gethostname(fc.node, sizeof(fc.node)) < 0 || !fc.node[0])
        snprintf(fc.node, sizeof(fc.node), "node");
    fc.node[sizeof(fc.node) - 1] = '\0';
    if (o->redis_password_file[0]) {
        FILE *f = fopen(o->redis_password_file, "re");
        size_t n = f ? fread(fc.password, 1, sizeof(fc.password) - 1, f) : 0;
        int e = errno;
        if (f)
            fclose(f);
        while (n && (fc.password[n - 1] == '\n' || fc.password[n - 1] == '\r'))
            n--;
        fc.password[n] = '\0';
        if (!f || !n) {
            fprintf(stderr, "ringsocks: %sredis_password_file %s: %s\n",
                    config_key_where(config, "redis_password_file", o->redis_password_file, where,
                                     sizeof(where)),
                    o->redis_password_file, !f ? strerror(e) : "empty");
            return NULL;
        }
    }
    struct fleet *fl = fleet_new(&fc, reg, wake_shards, ctl, err, sizeof(err));
    if (!fl)
        fprintf(stderr, "ringsocks: redis: %s\n", err);
    else
        fprintf(stderr, "ringsocks: redis %s, node %s, every %u ms, fallback %s%s\n", o->redis,
                fc.node, fc.interval_ms, fc.fail_open ? "open" : "closed",
                fc.users ? ", users from Redis" : "");
    sodium_memzero(fc.password, sizeof(fc.password));
    return fl;
}

int
main(int argc, char **argv)
{
    struct opts o;
    struct options_cli cli = {0};
    char err[8192];

    /* A first pass for -c, -t, -T, --help, --version and bad options. */
    options_defaults(&o);
    if (options_apply_args(argc, argv, &o, &cli, err, sizeof(err)) < 0) {
        fprintf(stderr, "ringsocks: %s\n(ringsocks --help lists the options)\n", err);
        return 2;
    }
    if (cli.help) {
        options_usage(stdout);
        return 0;
    }
    if (cli.version) {
        printf("ringsocks %s\n", RINGSOCKS_VERSION);
        return 0;
    }
    struct loader ld = {.argc = argc, .argv = argv, .config = cli.config};
    ld.reg = acct_reg_new();
    if (!ld.reg) {
        fprintf(stderr, "ringsocks: out of memory\n");
        return 1;
    }
    struct policy *pol = NULL;
    bool test = cli.test || cli.dump;
    if (sodium_init() < 0) {
        fprintf(stderr, "ringsocks: libsodium initialisation failed\n");
        acct_reg_free(ld.reg);
        return 1;
    }
    if (load_all(&ld, &o, &pol, 1, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        acct_reg_free(ld.reg);
        return test ? 1 : 2;
    }
    if (test) {
        int rc = check_config(&cli, &o, pol);
        policy_free(pol);
        acct_reg_free(ld.reg);
        return rc;
    }
    struct opts loaded = o;
    if (o.shards == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.shards = n > 0 ? (unsigned)n : 1;
    }
    /* Started by SIGUSR2 of a running ringsocks: its sockets, instead of binding. */
    struct upgrade_fd *handed = NULL;
    size_t n_handed = 0;
    int up_fd = upgrade_child_fd();
    if (up_fd >= 0) {
        unsigned old_shards = 0;
        int ret = upgrade_recv_fds(up_fd, 10000, &handed, &n_handed, &old_shards);
        if (ret < 0) {
            fprintf(stderr, "ringsocks: upgrade: receiving the sockets: %s\n", strerror(-ret));
            close(up_fd);
            policy_free(pol);
            acct_reg_free(ld.reg);
            return 2;
        }
        /* The sockets are one per shard; binding more would need the old uid's
         * SO_REUSEPORT group, and closing some would reset the clients queued on them. */
        if (old_shards != o.shards)
            fprintf(stderr,
                    "ringsocks: upgrade: shards = %u needs a restart: keeping the running %u "
                    "(one handed-over socket each)\n",
                    o.shards, old_shards);
        o.shards = old_shards;
        fprintf(stderr, "ringsocks: upgrade: %zu sockets received from the running process\n",
                n_handed);
    }
    rlim_t nofile = raise_nofile();
    raise_memlock();
    /* Two fds per tunnel; keep room for pipes in flight, DNS and listeners. */
    rlim_t reserve = nofile > 4096 ? 1024 : nofile / 4;
    unsigned fit = (unsigned)((nofile - reserve) / 2);
    if (o.max_conns == 0)
        o.max_conns = fit;
    else if (o.max_conns > fit)
        fprintf(stderr,
                "ringsocks: warning: --max-conns %u exceeds what RLIMIT_NOFILE %llu allows "
                "(about %u); accepting will pause when fds run out\n",
                o.max_conns, (unsigned long long)nofile, fit);
    /* Handshakes in progress per shard; any shard may take most connections. */
    if (o.hs_slots == 0)
        o.hs_slots = o.max_conns < 4096 ? o.max_conns : 4096;

    /* Every thread inherits this mask; only the control thread takes signals. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    int *fds = calloc((size_t)o.shards * o.n_listen, sizeof(int));
    int *listen_fds = calloc((size_t)o.shards * o.n_listen, sizeof(int)); /* copies: upgrades */
    struct shard *shards = calloc(o.shards, sizeof(struct shard));
    struct hosts *hosts = NULL;
    struct lockout *lockout = NULL;
    struct logger *lg = NULL;
    struct admin *admin = NULL, *admin_unix = NULL;
    struct climap *climap = NULL;
    struct ctl ctl;
    struct ctl_upgrade up;
    bool took_unix = false; /* an upgrade: the admin socket handed over serves here */
    unsigned started = 0, inited = 0;
    memset(&ctl, 0, sizeof(ctl));
    ctl.pol = pol;
    if (!fds || !shards || !listen_fds) {
        fprintf(stderr, "ringsocks: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < (size_t)o.shards * o.n_listen; i++)
        fds[i] = -1;
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
        fprintf(stderr, "ringsocks: c-ares initialisation failed\n");
        goto out;
    }
    hosts = hosts_load("/etc/hosts");
    if (!hosts) {
        fprintf(stderr, "ringsocks: out of memory reading /etc/hosts\n");
        goto out_ares;
    }
    /* Always: a reload may turn password authentication on. */
    lockout = lockout_new(LOCKOUT_SLOTS);
    if (!lockout) {
        fprintf(stderr, "ringsocks: out of memory for the login lockout table\n");
        goto out_fds;
    }
    transparent_mark(&o);
    if (bind_all(&o, fds, handed, n_handed) < 0)
        goto out_fds;
    transparent_listeners(&o, fds);
    memcpy(listen_fds, fds, (size_t)o.shards * o.n_listen * sizeof(int));
    if (o.admin.ss_family != AF_UNSPEC) {
        int afd =
            upgrade_take(handed, n_handed, UPGRADE_FD_ADMIN, (struct sockaddr *)&o.admin, NULL, 0);
        admin = afd >= 0 ? admin_adopt(afd, NULL, o.admin_hosts, err, sizeof(err))
                         : admin_open((struct sockaddr *)&o.admin, o.admin_hosts, err, sizeof(err));
        if (!admin) {
            if (afd >= 0)
                close(afd);
            fprintf(stderr, "ringsocks: admin endpoint: %s\n", err);
            goto out_fds;
        }
        admin_set_token(admin, o.has_admin_token ? o.admin_token : NULL);
    }
    /* Before the privilege drop: the socket's directory may be root's (the file is not). */
    if (o.admin_socket[0]) {
        int afd = upgrade_take(handed, n_handed, UPGRADE_FD_ADMIN_UNIX, NULL, o.admin_socket, 0);
        took_unix = afd >= 0;
        if (afd >= 0) {
            admin_unix = admin_adopt(afd, o.admin_socket, o.admin_hosts, err, sizeof(err));
            if (!admin_unix) {
                close(afd);
                fprintf(stderr, "ringsocks: admin endpoint: %s\n", err);
                goto out_fds;
            }
            admin_set_token(admin_unix, o.has_admin_token ? o.admin_token : NULL);
        } else {
            admin_unix = open_admin_socket(&o, err, sizeof(err));
            if (!admin_unix)
                goto out_fds;
        }
    }
    if (handed) {
        size_t dropped = upgrade_close_rest(handed, n_handed);
        if (dropped)
            fprintf(stderr,
                    "ringsocks: upgrade: %zu handed-over sockets the configuration no longer "
                    "names closed\n",
                    dropped);
    }
    /* What CONNECT must not reach unless a rule names it: ourselves (nested tunnels
     * through the proxy, and an admin endpoint that trusts whoever reaches it:
     * docs/design.md, "The proxy is not its own destination"). */
    for (unsigned i = 0; i < o.n_listen; i++)
        o.self[o.n_self++] = o.listen[i];
    if (admin) {
        socklen_t len = sizeof(o.self[o.n_self]);
        if (getsockname(admin_fd(admin), (struct sockaddr *)&o.self[o.n_self], &len) == 0)
            o.n_self++;
    }
    if (o.pid_file[0] && pid_file_write(o.pid_file) < 0)
        goto out_fds;
    lg = log_open(o.access_log, o.log_format, o.shards, 4096, err, sizeof(err));
    if (!lg) {
        fprintf(stderr, "ringsocks: access log: %s\n", err);
        goto out_fds;
    }
    if (o.redis[0]) {
        ld.fleet = ctl.fleet = fleet_start(&o, ld.reg, &ctl, cli.config);
        if (!ctl.fleet)
            goto out_fds;
    }
    /* Start-up's privileged work is done: the identity, and the capabilities the
     * configuration needs at run time (caps.h), while this is the only thread. */
    struct caps_plan caps;
    err[0] = '\0';
    bool low_ports = caps_port_privileged(o.bind_port_lo) || caps_port_privileged(o.udp_port_lo);
    if (caps_prepare(&caps, ctl.pol->rules_mark, low_ports, err, sizeof(err)) < 0 ||
        drop_privileges(&o, caps.keep != 0, up_fd >= 0) < 0 ||
        caps_apply(&caps, err, sizeof(err)) < 0) {
        if (err[0])
            fprintf(stderr, "ringsocks: %s\n", err);
        goto out_fds;
    }
    fprintf(stderr, "ringsocks: %s\n", err);
    if (caps.bnd_left && getuid() == 0 && !o.seccomp) {
        /* Without the filter's no_new_privs, root's execve() takes permitted = bounding. */
        caps_names(caps.bnd_left, err, sizeof(err));
        fprintf(stderr,
                "ringsocks: warning: root without CAP_SETPCAP could not cut the bounding set, "
                "and seccomp = false: a binary upgrade's new process regains %s\n",
                err);
    }
    if (log_run(lg, err, sizeof(err)) < 0) {
        fprintf(stderr, "ringsocks: %s\n", err);
        goto out_fds;
    }
    /* As the service user, before any byte is counted: the state file is read and written
     * back once (a directory it cannot write fails here, not at the first save). */
    ctl.acct = acctctl_new(&o, ctl.pol, ld.reg, err, sizeof(err));
    if (!ctl.acct) {
        fprintf(stderr, "ringsocks: %s\n", err);
        goto out_fds;
    }
    for (; inited < o.shards; inited++) {
        int ret = shard_init(&shards[inited], inited, &o, hosts, &ctl.pol, lg,
                             fds + inited * o.n_listen, o.n_listen);
        /* The shard owns its listeners from here on, even when init failed. */
        for (unsigned i = 0; i < o.n_listen; i++)
            fds[inited * o.n_listen + i] = -1;
        if (ret < 0) {
            fprintf(stderr, "ringsocks: shard %u: %s\n", inited, strerror(-ret));
            inited++;
            goto out_shards;
        }
    }
    climap = climap_new();
    if (!climap) {
        fprintf(stderr, "ringsocks: out of memory\n");
        goto out_shards;
    }
    for (unsigned i = 0; i < inited; i++) {
        shards[i].climap = climap;
        shards[i].leases = ctl.fleet ? fleet_board(ctl.fleet) : NULL;
    }
    shard_set_peers(shards, o.shards);
    for (unsigned i = 0; i < o.shards; i++)
        shards[i].lockout = lockout;
    for (; started < o.shards; started++) {
        int ret = shard_start(&shards[started]);
        if (ret < 0) {
            fprintf(stderr, "ringsocks: shard %u: io_uring setup failed: %s%s\n", started,
                    strerror(-ret),
                    ret == -ENOSYS || ret == -EPERM ? " (is io_uring disabled by sysctl?)" : "");
            goto out_shards;
        }
    }
    /* Start-up is over: every thread runs, every listener is bound, privileges are dropped.
     * From here on only the calls of src/sandbox_syscalls.h (sandbox.h). */
    int sb = o.seccomp ? sandbox_install(up_fd >= 0, err, sizeof(err)) : 0;
    if (sb < 0) {
        fprintf(stderr, "ringsocks: %s (seccomp = false runs without the filter)\n", err);
        goto out_shards;
    }
    if (sb > 0)
        fprintf(stderr, "ringsocks: %s\n", err);
    for (unsigned i = 0; i < o.n_listen; i++) {
        char text[ADDR_STRLEN];
        fprintf(stderr, "ringsocks: listening on %s\n",
                addr_format((struct sockaddr *)&o.listen[i], text, sizeof(text)));
    }
    if (admin) {
        char text[ADDR_STRLEN];
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        getsockname(admin_fd(admin), (struct sockaddr *)&ss, &len);
        fprintf(stderr, "ringsocks: admin on http://%s/%s\n",
                addr_format((struct sockaddr *)&ss, text, sizeof(text)),
                o.has_admin_token ? " (bearer token)" : "");
    }
    if (admin_unix)
        fprintf(stderr, "ringsocks: admin on unix:%s (mode %s)%s\n", o.admin_socket,
                o.admin_socket_mode, o.has_admin_token ? " (bearer token)" : "");
    fprintf(stderr, "ringsocks %s: %u shards, relay %s, max %u connections, auth %s",
            RINGSOCKS_VERSION, o.shards, options_relay_name(o.relay), o.max_conns, o.auth);
    if (options_auth_has(&o, SOCKS5_METHOD_PASSWORD))
        fprintf(stderr, " (%zu users)", users_count(pol->users));
    fprintf(stderr, ", %zu rules\n", acl_count(pol->acl));
    /* Only now, every shard accepting: the old process may stop, systemd may go on. */
    if (up_fd >= 0) {
        int ret = upgrade_send_ready(up_fd, took_unix ? UPGRADE_READY_ADMIN_UNIX : 0);
        if (ret < 0)
            fprintf(stderr, "ringsocks: upgrade: telling the old process we serve: %s\n",
                    strerror(-ret));
        else
            fprintf(stderr, "ringsocks: upgrade: serving (pid %d); the old process drains\n",
                    (int)getpid());
    } else {
        notify_send("READY=1\nMAINPID=%d", (int)getpid());
    }

    ctl.o = &o;
    ctl.loaded = loaded;
    ctl.shards = shards;
    ctl.n_shards = o.shards;
    ctl.lg = lg;
    ctl.admin = admin;
    ctl.admin_unix = admin_unix;
    ctl.load = load_all;
    ctl.load_arg = &ld;
    ctl.reg = ld.reg;
    ctl.climap = climap;
    ctl_upgrade_init(&up, argv, listen_fds, o.n_listen);
    up.from_old = up_fd; /* its quota bytes come at its exit */
    up_fd = -1;
    ctl.up = &up;
    ctl_run(&ctl);
    admin = ctl.admin; /* closed by a hand-over */
    admin_unix = ctl.admin_unix;
    rc = 0;
    /* A clean exit: no PID file naming a process that is gone (after an upgrade, it names
     * the new one). */
    if (o.pid_file[0] && !up.handed_over && unlink(o.pid_file) == -1 && errno != ENOENT)
        fprintf(stderr, "ringsocks: pid_file %s not removed: %s\n", o.pid_file, strerror(errno));
out_shards:
    for (unsigned i = 0; i < started; i++)
        shard_stop(&shards[i]);
    for (unsigned i = 0; i < inited; i++)
        shard_join(&shards[i]);
    climap_free(climap); /* the shards are gone: nobody holds a node */
    /* Every byte is counted now: the last accounting lines and state file. */
    if (rc == 0) {
        ctl_upgrade_finish(&ctl);
        ctl_finish(&ctl);
    }
out_fds:
    for (size_t i = 0; i < (size_t)o.shards * o.n_listen; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    log_stop(lg);
    admin_close(admin);
    admin_close(admin_unix);
    lockout_free(lockout);
    hosts_free(hosts);
out_ares:
    ares_library_cleanup();
out:
    if (handed) {
        upgrade_close_rest(handed, n_handed);
        free(handed);
    }
    if (up_fd >= 0)
        close(up_fd);
    free(listen_fds);
    acctctl_free(ctl.acct);
    fleet_free(ctl.fleet); /* after the shards: they asked on its board */
    policy_free(ctl.pol);
    acct_reg_free(ld.reg); /* after the shards: their tunnels pointed into it */
    free(fds);
    free(shards);
    return rc;
}
