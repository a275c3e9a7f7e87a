/*
 * test_sandbox.c - the seccomp filter (sandbox.h), installed for real in a
 * forked child: calls on the list still work, a call off it (init_module,
 * mount, kexec_load: with arguments that would fail harmlessly anyway) ends
 * the process with SIGSYS after one line on stderr naming its number, and a
 * thread that ran before the filter was installed is covered too (TSYNC).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sandbox.h"

/* What the child did: its wait status and the start of its stderr. */
struct outcome {
    int status;
    char err[512];
};

/* Fork; the child runs before() (may be NULL), installs the filter, runs after() and exits 0. */
static void
run_child(void (*before)(void), void (*after)(void), struct outcome *out)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], STDERR_FILENO);
        close(p[0]);
        close(p[1]);
        if (before)
            before();
        char err[256];
        if (sandbox_install(false, err, sizeof(err)) < 0) {
            dprintf(STDERR_FILENO, "install: %s\n", err);
            _exit(3);
        }
        after();
        _exit(0);
    }
    close(p[1]);
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(out->err) - 1 &&
           (n = read(p[0], out->err + len, sizeof(out->err) - 1 - len)) > 0)
        len += (size_t)n;
    out->err[len] = '\0';
    close(p[0]);
    assert_int_equal(waitpid(pid, &out->status, 0), pid);
}

static void
assert_killed_naming(const struct outcome *o, long nr)
{
    char want[64];
    if (!WIFSIGNALED(o->status) || WTERMSIG(o->status) != SIGSYS)
        fail_msg("expected death by SIGSYS, got status 0x%x; stderr: %s", o->status, o->err);
    snprintf(want, sizeof(want), "system call %ld is not in the allowed list", nr);
    if (!strstr(o->err, want))
        fail_msg("stderr does not say \"%s\": %s", want, o->err);
}

/* Calls every shard and the control thread make all the time. */
static void
allowed_calls(void)
{
    char buf[8];
    int p[2];
    if (pipe2(p, 0) == -1 || write(p[1], "x", 1) != 1 || read(p[0], buf, 1) != 1)
        _exit(4);
    close(p[0]);
    close(p[1]);
    if (getpid() <= 0)
        _exit(5);
}

static void
call_init_module(void)
{
    syscall(SYS_init_module, NULL, 0UL, "");
}

static void
call_mount(void)
{
    syscall(SYS_mount, "none", "/nonexistent/ringsocks-test", "tmpfs", 0UL, NULL);
}

static void
call_kexec_load(void)
{
    /* Bad flags: refused by the kernel even for root, had the filter let it through. */
    syscall(SYS_kexec_load, 0UL, 0UL, NULL, ~0UL);
}

static void
test_allowed_calls_work(void **state)
{
    (void)state;
    struct outcome o;
    run_child(NULL, allowed_calls, &o);
    if (!WIFEXITED(o.status) || WEXITSTATUS(o.status) != 0)
        fail_msg("status 0x%x, stderr: %s", o.status, o.err);
}

static void
test_calls_off_the_list_kill(void **state)
{
    (void)state;
    struct outcome o;
    run_child(NULL, call_init_module, &o);
    assert_killed_naming(&o, SYS_init_module);
    run_child(NULL, call_mount, &o);
    assert_killed_naming(&o, SYS_mount);
    run_child(NULL, call_kexec_load, &o);
    assert_killed_naming(&o, SYS_kexec_load);
}

static pthread_barrier_t installed;
static pthread_t early;

static void *
late_caller(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&installed);
    call_mount();
    return NULL;
}

static void
start_early_thread(void)
{
    pthread_barrier_init(&installed, NULL, 2);
    if (pthread_create(&early, NULL, late_caller, NULL) != 0)
        _exit(6);
}

static void
release_early_thread(void)
{
    pthread_barrier_wait(&installed);
    pthread_join(early, NULL);
}

/* A thread started before the filter, calling after it: covered (SCMP_FLTATR_CTL_TSYNC). */
static void
test_running_threads_covered(void **state)
{
    (void)state;
    struct outcome o;
    run_child(start_early_thread, release_early_thread, &o);
    assert_killed_naming(&o, SYS_mount);
}

static void
test_count(void **state)
{
    (void)state;
    unsigned n = sandbox_count();
    assert_true(n > 50);
    assert_true(n < 200);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allowed_calls_work),
        cmocka_unit_test(test_calls_off_the_list_kill),
        cmocka_unit_test(test_running_threads_covered),
        cmocka_unit_test(test_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
