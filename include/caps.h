/*
 * caps.h - the capabilities ringsocks keeps once start-up is over: those a
 * configured feature needs at run time, and nothing else (docs/security.md,
 * "Capabilities after start-up").
 *
 * Main thread only, while it is the only thread (Linux keeps the sets per
 * thread): caps_prepare() before the identity change (setuid), caps_apply()
 * after it, both before any other thread starts.
 */
#ifndef RINGSOCKS_CAPS_H
#define RINGSOCKS_CAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A set of capabilities: bit n is capability n (linux/capability.h). */
#define CAPS_BIT(n) ((uint64_t)1 << (n))

/* caps_names()' buffer for any set, all 64 bits (746 characters and the NUL). */
#define CAPS_NAMES_LEN 768

/* The five sets of a thread (capabilities(7)). */
struct caps {
    uint64_t eff, prm, inh, bnd, amb;
};

struct caps_plan {
    struct caps had;   /* at caps_prepare() */
    uint64_t keep;     /* what every set becomes */
    uid_t uid;         /* the real uid at caps_prepare(): caps_apply() sees a change of user */
    uint64_t bnd_left; /* not kept but left in the bounding set (no CAP_SETPCAP to drop it) */
    bool mark_lost;    /* rules set mark, and SO_MARK is refused with what is held */
};

/*
 * What to keep of held (the permitted set): for rules with mark (mark), the first of
 * CAP_NET_RAW (when raw_marks: the kernel takes SO_MARK with it, Linux 5.17 and later)
 * and CAP_NET_ADMIN that is held; for low_ports (bind_ports or udp_ports reach below
 * net.ipv4.ip_unprivileged_port_start), CAP_NET_BIND_SERVICE if held. Nothing else:
 * transparent listeners got IP_TRANSPARENT at bind, their accepted sockets inherit it.
 */
uint64_t caps_choose(uint64_t held, bool mark, bool raw_marks, bool low_ports);

/* Is port a privileged one here (below net.ipv4.ip_unprivileged_port_start)? 0: no. */
bool caps_port_privileged(unsigned port);

/* "cap_net_raw,cap_net_bind_service" (capsh's names), or "none". */
void caps_names(uint64_t set, char *buf, size_t len);

/* Does this thread hold (effective) a capability caps_choose() keeps for SO_MARK? For a
 * reload that brings the first rule with mark: the start kept none for it. */
bool caps_can_mark(void);

/* This thread's five sets. 0 or -errno. */
int caps_read(struct caps *c);

/*
 * Before the identity change: read the sets, choose keep (trying SO_MARK with
 * CAP_NET_RAW alone when both it and CAP_NET_ADMIN are held), and drop from the
 * bounding set everything not kept (that needs CAP_SETPCAP, which the identity change
 * or caps_apply() takes away). Fails when another thread runs already: it would keep
 * its capabilities. 0, or -1 with the reason in err.
 */
int caps_prepare(struct caps_plan *p, bool mark, bool low_ports, char *err, size_t errlen);

/*
 * After the identity change (setuid with PR_SET_KEEPCAPS when keep is not empty):
 * PR_SET_KEEPCAPS off, effective = permitted = inheritable = ambient = keep, checked.
 * An upgrade's execve() then gives the new process the same sets, which it finds in
 * place (no capset() then). Under any seccomp filter, a supervisor's or the old
 * process's, capset() is called all the same. err gets the line to print (what was
 * kept, or a warning). 0, or -1 when the process would keep more than keep (err says
 * why): capset() refused (EPERM) after a change of user, or with more held than the
 * supervisor gave as ambient.
 */
int caps_apply(const struct caps_plan *p, char *err, size_t errlen);

#endif
