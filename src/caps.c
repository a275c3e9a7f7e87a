/*
 * caps.c - the capabilities kept after start-up (caps.h).
 *
 * A thread has five sets (capabilities(7)). Started as root it holds every
 * capability; started by systemd, what AmbientCapabilities= gave. Once the
 * listeners are bound and the files open, ringsocks needs at most:
 *   - SO_MARK, for rules with mark: CAP_NET_RAW (Linux 5.17 and later, tried
 *     here) or else CAP_NET_ADMIN, which can also rewrite routes and firewall;
 *   - CAP_NET_BIND_SERVICE, when bind_ports or udp_ports reach below
 *     net.ipv4.ip_unprivileged_port_start: the shards bind those at run time.
 * Transparent listeners need nothing after start: IP_TRANSPARENT is set at
 * bind, accepted sockets inherit it; an upgrade takes the sockets as they are.
 *
 * Every set becomes keep, the bounding set included, so that the execve() of an
 * upgrade gives the new process the same sets and no more: root's permitted set
 * is then bounding | inheritable, any other uid's the ambient set (and under
 * the seccomp filter no_new_privs caps both at the old permitted set).
 */
#include "caps.h"

#include <dirent.h>
#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#define CAPS_MAX 64

/* capsh's names, linux/capability.h's order up to CAP_LAST_CAP; later ones print as cap_N. */
static const char *const caps_name[] = {
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
};

uint64_t
caps_choose(uint64_t held, bool mark, bool raw_marks, bool low_ports)
{
    uint64_t keep = 0;
    if (mark && raw_marks && (held & CAPS_BIT(CAP_NET_RAW)))
        keep |= CAPS_BIT(CAP_NET_RAW);
    else if (mark && (held & CAPS_BIT(CAP_NET_ADMIN)))
        keep |= CAPS_BIT(CAP_NET_ADMIN);
    if (low_ports && (held & CAPS_BIT(CAP_NET_BIND_SERVICE)))
        keep |= CAPS_BIT(CAP_NET_BIND_SERVICE);
    return keep;
}

bool
caps_port_privileged(unsigned port)
{
    unsigned start = 1024;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "re");
    if (f) {
        if (fscanf(f, "%u", &start) != 1)
            start = 1024;
        fclose(f);
    }
    return port && port < start;
}

void
caps_names(uint64_t set, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < CAPS_MAX && n < len; i++) {
        if (!(set & CAPS_BIT(i)))
            continue;
        const char *name = i < sizeof(caps_name) / sizeof(caps_name[0]) ? caps_name[i] : NULL;
        int w = name ? snprintf(buf + n, len - n, "%s%s", n ? "," : "", name)
                     : snprintf(buf + n, len - n, "%scap_%u", n ? "," : "", i);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    if (!set)
        snprintf(buf, len, "none");
}

static int
caps_get3(uint64_t *eff, uint64_t *prm, uint64_t *inh)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof(d));
    if (syscall(SYS_capget, &h, d) == -1)
        return -errno;
    *eff = d[0].effective | (uint64_t)d[1].effective << 32;
    *prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
    *inh = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
    return 0;
}

static int
caps_set3(uint64_t eff, uint64_t prm, uint64_t inh)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2] = {
        {.effective = (uint32_t)eff, .permitted = (uint32_t)prm, .inheritable = (uint32_t)inh},
        {.effective = (uint32_t)(eff >> 32),
         .permitted = (uint32_t)(prm >> 32),
         .inheritable = (uint32_t)(inh >> 32)},
    };
    return syscall(SYS_capset, &h, d) == -1 ? -errno : 0;
}

bool
caps_can_mark(void)
{
    uint64_t eff, prm, inh;
    return caps_get3(&eff, &prm, &inh) < 0 ||
           (eff & (CAPS_BIT(CAP_NET_RAW) | CAPS_BIT(CAP_NET_ADMIN)));
}

int
caps_read(struct caps *c)
{
    memset(c, 0, sizeof(*c));
    int ret = caps_get3(&c->eff, &c->prm, &c->inh);
    if (ret < 0)
        return ret;
    for (int i = 0; i < CAPS_MAX; i++) {
        int b = prctl(PR_CAPBSET_READ, (unsigned long)i, 0L, 0L, 0L);
        if (b < 0)
            break; /* past the last capability this kernel knows */
        if (b == 1)
            c->bnd |= CAPS_BIT(i);
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, (unsigned long)i, 0L, 0L) == 1)
            c->amb |= CAPS_BIT(i);
    }
    return 0;
}

/* Threads of this process: /proc/self/task's entries; 0 when /proc does not say. */
static unsigned
caps_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    unsigned n = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Does the kernel take SO_MARK from this thread with cap alone effective? 1, 0, or -errno
 * when the effective set cannot be changed to try (a supervisor's filter, say). */
static int
caps_marks_with(const struct caps *had, unsigned cap)
{
    int ret = caps_set3(CAPS_BIT(cap), had->prm, had->inh);
    if (ret < 0)
        return ret;
    /* SO_MARK is a SOL_SOCKET option, taken on any socket: AF_UNIX is there without IPv4. */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    unsigned mark = 1;
    ret = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) == 0;
    if (fd >= 0)
        close(fd);
    if (caps_set3(had->eff, had->prm, had->inh) < 0)
        return -errno;
    return ret;
}

/* Linux 5.17 or later (SO_MARK with CAP_NET_RAW): the guess when it cannot be tried. */
static bool
caps_kernel_raw_marks(void)
{
    struct utsname u;
    unsigned major = 0, minor = 0;
    if (uname(&u) < 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2)
        return false;
    return major > 5 || (major == 5 && minor >= 17);
}

int
caps_prepare(struct caps_plan *p, bool mark, bool low_ports, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    unsigned threads = caps_threads();
    if (threads > 1) {
        snprintf(err, errlen,
                 "capabilities: %u threads run before the drop; capabilities are per thread, so "
                 "they would keep theirs (a bug: start them after caps_apply())",
                 threads);
        return -1;
    }
    int ret = caps_read(&p->had);
    if (ret < 0) {
        snprintf(err, errlen, "capabilities: capget: %s", strerror(-ret));
        return -1;
    }
    p->uid = getuid();
    bool raw_marks = caps_kernel_raw_marks();
    uint64_t both = CAPS_BIT(CAP_NET_RAW) | CAPS_BIT(CAP_NET_ADMIN);
    if (mark && (p->had.prm & both) == both) {
        ret = caps_marks_with(&p->had, CAP_NET_RAW);
        if (ret >= 0)
            raw_marks = ret == 1;
    }
    p->keep = caps_choose(p->had.prm, mark, raw_marks, low_ports);
    p->mark_lost = mark && !(p->keep & both);
    if (!(p->had.eff & CAPS_BIT(CAP_SETPCAP))) {
        /* The bounding set stays as it is: nothing may drop from it. */
        p->bnd_left = p->had.bnd & ~p->keep;
        return 0;
    }
    for (int i = 0; i < CAPS_MAX; i++) {
        if (!(p->had.bnd & CAPS_BIT(i)) || (p->keep & CAPS_BIT(i)))
            continue;
        if (prctl(PR_CAPBSET_DROP, (unsigned long)i, 0L, 0L, 0L) == -1) {
            snprintf(err, errlen, "capabilities: dropping capability %d from the bounding set: %s",
                     i, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* Why the configuration keeps capability i (one of caps_choose()'s). */
static const char *
caps_why(unsigned i)
{
    return i == CAP_NET_BIND_SERVICE ? "bind_ports or udp_ports below the first unprivileged port"
                                     : "SO_MARK of rules with mark";
}

/* err: "capabilities after start-up: NAME (why), ...; note" and the warning about marks. */
static void
caps_say(const struct caps_plan *p, uint64_t kept, const char *note, char *err, size_t errlen)
{
    char names[64];
    size_t n = (size_t)snprintf(err, errlen, "capabilities after start-up: %s", kept ? "" : "none");
    for (unsigned i = 0; i < CAPS_MAX && n < errlen; i++) {
        if (!(kept & CAPS_BIT(i)))
            continue;
        caps_names(CAPS_BIT(i), names, sizeof(names));
        kept &= ~CAPS_BIT(i);
        n += (size_t)snprintf(err + n, errlen - n, "%s (%s)%s", names, caps_why(i),
                              kept ? ", " : "");
    }
    if (note[0] && n < errlen)
        n += (size_t)snprintf(err + n, errlen - n, "; %s", note);
    if (p->mark_lost && n < errlen)
        snprintf(err + n, errlen - n,
                 "\nringsocks: warning: rules set mark, but SO_MARK needs CAP_NET_RAW (Linux "
                 "5.17 and later) or CAP_NET_ADMIN, which this process does not hold: "
                 "their tunnels fail (0x02)");
}

/* Sets wanted: every one keep, inheritable and ambient what may become inheritable. */
static bool
caps_in_place(const struct caps *now, uint64_t keep, uint64_t inh)
{
    return now->eff == keep && now->prm == keep && now->inh == inh && now->amb == inh;
}

int
caps_apply(const struct caps_plan *p, char *err, size_t errlen)
{
    struct caps now;
    uint64_t keep = p->keep;
    char names[CAPS_NAMES_LEN], note[CAPS_NAMES_LEN + 256] = "";
    /* Whatever happens below, no later setuid() keeps the permitted set. */
    prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L);
    /* What is neither inheritable nor in the bounding set cannot become inheritable. */
    uint64_t inh = keep & (p->had.inh | p->had.bnd);
    int ret = caps_read(&now);
    if (ret < 0) {
        snprintf(err, errlen, "capabilities: capget: %s", strerror(-ret));
        return -1;
    }
    if (caps_in_place(&now, keep, inh)) {
        /* An upgrade's new process, given its sets by the old one's execve(). */
        caps_say(p, keep, note, err, errlen);
        return 0;
    }
    ret = caps_set3(keep, keep, inh);
    if (ret == -EPERM) {
        /* capset() refused outright: a supervisor's system-call filter (an older unit's
         * SystemCallFilter=~@privileged without capset). Fine only when nothing more is
         * held than the supervisor handed as ambient, under the identity it started. */
        caps_read(&now);
        uint64_t more = now.prm & ~keep & ~p->had.amb;
        bool moved = getuid() != p->uid;
        caps_names(more ? more : now.prm & ~keep, names, sizeof(names));
        if (more || moved) {
            snprintf(
                err, errlen,
                "capabilities: capset() was refused (%s: a supervisor's system-call "
                "filter without capset?), so %s would stay held%s; allow capset (ringsocks only "
                "narrows its own sets with it)",
                strerror(-ret), names,
                moved ? " after the change of user, which kept them for capset()" : "");
            return -1;
        }
        snprintf(note, sizeof(note),
                 "but capset() was refused (%s: a supervisor's system-call filter?), so %s "
                 "(given as ambient) stay held",
                 strerror(-ret), names);
        caps_say(p, keep, note, err, errlen);
        return 0;
    }
    if (ret < 0) {
        snprintf(err, errlen, "capabilities: capset: %s", strerror(-ret));
        return -1;
    }
    /* The ambient set: what an upgrade's execve() hands to a new process that is not root. */
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0L, 0L, 0L);
    for (int i = 0; i < CAPS_MAX; i++)
        if (inh & CAPS_BIT(i))
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, (unsigned long)i, 0L, 0L);
    ret = caps_read(&now);
    if (ret < 0 || now.prm != keep || now.eff != keep) {
        caps_names(ret < 0 ? ~(uint64_t)0 : now.prm, names, sizeof(names));
        snprintf(err, errlen, "capabilities: %s still held after capset (wanted %s)", names,
                 keep ? "fewer" : "none");
        return -1;
    }
    if (now.amb != inh) {
        caps_names(inh & ~now.amb, names, sizeof(names));
        snprintf(note, sizeof(note), "not ambient: %s (an upgrade's new process goes without)",
                 names);
    }
    caps_say(p, keep, note, err, errlen);
    return 0;
}
