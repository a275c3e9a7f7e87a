/*
 * sandbox.c - the seccomp filter (sandbox.h): built from the one list of
 * allowed system calls, src/sandbox_syscalls.h, and loaded on every thread at
 * once. main() calls it once, after start-up; nothing else may.
 *
 * It must never be made looser at run time: there is no call that removes or
 * widens it (the kernel has none either), and what a missed call does is
 * said once on stderr by the SIGSYS handler, which may only use
 * async-signal-safe calls that are themselves on the list (write, and tgkill
 * through raise()).
 */
#include "sandbox.h"

#include <errno.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const sandbox_calls[] = {
#define SANDBOX_CALL(name) #name,
#include "sandbox_syscalls.h"
#undef SANDBOX_CALL
};

#define SANDBOX_N_CALLS (sizeof(sandbox_calls) / sizeof(sandbox_calls[0]))

/* Decimal digits of v into buf (no NUL); how many. For the signal handler. */
static size_t
u_text(char *buf, unsigned v)
{
    char tmp[12];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static void
put(char *line, size_t *len, size_t cap, const char *s, size_t n)
{
    if (*len + n > cap)
        n = cap - *len;
    memcpy(line + *len, s, n);
    *len += n;
}

/*
 * SIGSYS of SCMP_ACT_TRAP: the call was not on the list. Say which (the
 * number: `scmp_sys_resolver N` names it) and end the process with SIGSYS,
 * as SCMP_ACT_KILL_PROCESS would, so that a supervisor sees the same status.
 * SA_RESETHAND made the disposition the default already; SA_NODEFER lets
 * raise() deliver it at once.
 */
static void
on_sigsys(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    static const char a[] = "ringsocks: seccomp: system call ";
    static const char b[] = " is not in the allowed list (src/sandbox_syscalls.h): stopping. "
                            "`scmp_sys_resolver ";
    static const char c[] = "` names it; seccomp = false turns the filter off\n";
    char line[320], num[12];
    size_t len = 0, nl = u_text(num, (unsigned)si->si_syscall);
    put(line, &len, sizeof(line), a, sizeof(a) - 1);
    put(line, &len, sizeof(line), num, nl);
    put(line, &len, sizeof(line), b, sizeof(b) - 1);
    put(line, &len, sizeof(line), num, nl);
    put(line, &len, sizeof(line), c, sizeof(c) - 1);
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
    raise(sig);
}

unsigned
sandbox_count(void)
{
    unsigned n = 0;
    for (size_t i = 0; i < SANDBOX_N_CALLS; i++)
        if (seccomp_syscall_resolve_name(sandbox_calls[i]) != __NR_SCMP_ERROR)
            n++;
    return n;
}

int
sandbox_install(bool upgraded, char *err, size_t errlen)
{
    int rc;
    struct sigaction sa = {.sa_sigaction = on_sigsys,
                           .sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) == -1) {
        rc = -errno;
        snprintf(err, errlen, "seccomp: SIGSYS handler: %s", strerror(errno));
        return rc;
    }
#if !defined(__x86_64__)
    snprintf(err, errlen,
             "seccomp: the list (src/sandbox_syscalls.h) was traced on x86-64 only: "
             "no filter on this architecture");
    return 1;
#endif
    /* An upgrade's process under its parent's filter adds no second copy. Any other filter
     * is a supervisor's (systemd's, a container runtime's), wider: this one goes on top. */
    if (upgraded && prctl(PR_GET_SECCOMP, 0L, 0L, 0L, 0L) == 2) {
        snprintf(err, errlen,
                 "seccomp: the filter of the process that started this one "
                 "(an upgrade) holds already");
        return 1;
    }
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
    if (!ctx) {
        snprintf(err, errlen, "seccomp: out of memory");
        return -ENOMEM;
    }
    /* Every thread at once: the shards, workers and writer already run. libseccomp refuses
     * it when its probe of seccomp() failed (no kernel support, or a supervisor's filter
     * that denies the call). */
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    if (rc < 0) {
        snprintf(err, errlen, "seccomp: seccomp() with TSYNC is not available here: %s",
                 strerror(-rc));
        goto out;
    }
    for (size_t i = 0; i < SANDBOX_N_CALLS; i++) {
        int nr = seccomp_syscall_resolve_name(sandbox_calls[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not a call of this architecture (or unknown to libseccomp) */
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        if (rc < 0) {
            snprintf(err, errlen, "seccomp: allowing %s: %s", sandbox_calls[i], strerror(-rc));
            goto out;
        }
    }
    rc = seccomp_load(ctx);
    if (rc < 0)
        snprintf(err, errlen, "seccomp: loading the filter: %s", strerror(-rc));
out:
    seccomp_release(ctx);
    return rc < 0 ? rc : 0;
}
