/*
 * limits.c - socksload's own limits: when the load generator, not the proxy, bounds what a
 * run measured, the report says so. The open-files limit, the local ports, and each worker
 * thread's CPU time against the wall time. Pure: main reads the numbers (getrlimit, the
 * failures table, the workers' CPU clocks) and prints the sentences.
 */
#include "socksload.h"

#include <inttypes.h>
#include <stdarg.h>

static void __attribute__((format(printf, 2, 3))) add(struct limits *l, const char *fmt, ...)
{
    va_list ap;

    if (l->n == LIMITS_MAX)
        return;
    va_start(ap, fmt);
    vsnprintf(l->msg[l->n++], LIMITS_LEN, fmt, ap);
    va_end(ap);
}

uint64_t
limits_fds_needed(enum mode m, uint64_t tunnels, bool embedded)
{
    return tunnels * ((m == MODE_UDP ? 2 : 1) + (embedded ? 1 : 0)) + LIMITS_FD_SLACK;
}

void
limits_nofile(struct limits *l, uint64_t soft, uint64_t need)
{
    if (soft >= need)
        return;
    add(l,
        "open files: the limit is %" PRIu64 " and the run needs about %" PRIu64
        " (ulimit -n, or fewer tunnels): connects past it fail with EMFILE",
        soft, need);
}

void
limits_ports(struct limits *l, uint64_t n)
{
    if (n == 0)
        return;
    add(l,
        "local ports: %" PRIu64 " connect%s failed with EADDRNOTAVAIL, socksload ran out of "
        "local ports (more source addresses with --source, or a wider "
        "net.ipv4.ip_local_port_range; --close rst leaves no TIME_WAIT)",
        n, n == 1 ? "" : "s");
}

bool
limits_cpu(struct limits *l, unsigned worker, uint64_t cpu_ns, uint64_t wall_ns)
{
    if (wall_ns == 0 || cpu_ns * 100 <= wall_ns * LIMITS_CPU_PCT)
        return false;
    double pct = 100.0 * (double)cpu_ns / (double)wall_ns;
    add(l,
        "socksload's worker %u was CPU-bound (%.0f %%): the figure may be socksload's limit, "
        "try --threads",
        worker, pct > 100 ? 100 : pct);
    return true;
}
