/*
 * test_caps.c - cmocka unit tests for the choice of the capabilities kept after
 * start-up (src/caps.c): what each configured need keeps of what is held, and
 * nothing else; the names printed at start; this process's sets as read; the drop
 * itself in a forked child (as root) under an outside seccomp filter that allows
 * everything (systemd's, Docker's) and one that refuses capset() with EPERM.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caps.h"

#define ALL   (~(uint64_t)0 >> (64 - CAP_LAST_CAP - 1))
#define RAW   CAPS_BIT(CAP_NET_RAW)
#define ADMIN CAPS_BIT(CAP_NET_ADMIN)
#define BINDS CAPS_BIT(CAP_NET_BIND_SERVICE)

/* Nothing needed: nothing kept, whatever is held (root holds everything). */
static void
test_choose_none(void **state)
{
    (void)state;
    assert_int_equal(caps_choose(ALL, false, true, false), 0);
    assert_int_equal(caps_choose(ALL, false, false, false), 0);
    assert_int_equal(caps_choose(0, true, true, true), 0);
}

/* Marks: CAP_NET_RAW where the kernel takes it, else CAP_NET_ADMIN; never both. */
static void
test_choose_mark(void **state)
{
    (void)state;
    assert_int_equal(caps_choose(ALL, true, true, false), RAW);
    assert_int_equal(caps_choose(ALL, true, false, false), ADMIN);
    assert_int_equal(caps_choose(ADMIN | BINDS, true, true, false), ADMIN);
    assert_int_equal(caps_choose(RAW | BINDS, true, false, false), 0);
    assert_int_equal(caps_choose(RAW | BINDS, true, true, false), RAW);
}

/* Low BIND/UDP ports: CAP_NET_BIND_SERVICE if held, next to a mark's. */
static void
test_choose_low_ports(void **state)
{
    (void)state;
    assert_int_equal(caps_choose(ALL, false, true, true), BINDS);
    assert_int_equal(caps_choose(ALL, true, true, true), BINDS | RAW);
    assert_int_equal(caps_choose(RAW, false, true, true), 0);
}

static void
test_names(void **state)
{
    (void)state;
    char buf[128];
    caps_names(0, buf, sizeof(buf));
    assert_string_equal(buf, "none");
    caps_names(RAW | BINDS, buf, sizeof(buf));
    assert_string_equal(buf, "cap_net_bind_service,cap_net_raw");
    caps_names(CAPS_BIT(CAP_CHECKPOINT_RESTORE), buf, sizeof(buf));
    assert_string_equal(buf, "cap_checkpoint_restore");
    caps_names(CAPS_BIT(CAP_LAST_CAP + 1), buf, sizeof(buf));
    assert_int_equal(strncmp(buf, "cap_", 4), 0);
    assert_in_range(buf[4], '0', '9');
    caps_names(RAW | BINDS, buf, 8); /* cut, still a string */
    assert_int_equal(strlen(buf), 7);
}

/* Every capability this kernel header knows has its name; all 64 fit CAPS_NAMES_LEN. */
static void
test_names_all(void **state)
{
    (void)state;
    char buf[CAPS_NAMES_LEN];
    for (unsigned i = 0; i <= CAP_LAST_CAP; i++) {
        caps_names(CAPS_BIT(i), buf, sizeof(buf));
        if (buf[4] >= '0' && buf[4] <= '9')
            fail_msg("capability %u has no name: %s", i, buf);
    }
    caps_names(~(uint64_t)0, buf, sizeof(buf));
    assert_true(strlen(buf) < sizeof(buf) - 1);
    assert_string_equal(buf + strlen(buf) - 7, ",cap_63");
}

/* Install a filter that allows every call, or returns EPERM for capset() alone. */
static void
filter_install(bool refuse_capset)
{
    struct sock_filter allow_all[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_filter no_capset[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_capset, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog =
        refuse_capset ? (struct sock_fprog){4, no_capset} : (struct sock_fprog){1, allow_all};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) == -1 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0L, 0L) == -1)
        _exit(90);
}

/* In a forked child as root under a filter: prepare and apply; the child's exit status
 * says what was found (0: as expected). */
static int
child_drop(bool refuse_capset, bool mark)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct caps_plan p;
        struct caps now;
        char err[2048] = "";
        filter_install(refuse_capset);
        if (caps_prepare(&p, mark, false, err, sizeof(err)) < 0)
            _exit(91);
        if (refuse_capset) /* as drop_privileges() leaves it for a setuid() */
            prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L);
        int ret = caps_apply(&p, err, sizeof(err));
        if (refuse_capset) /* root holding all of them: start-up must fail, said */
            _exit(ret == -1 && strstr(err, "capset() was refused") &&
                          prctl(PR_GET_KEEPCAPS, 0L, 0L, 0L, 0L) == 0
                      ? 0
                      : 92);
        if (ret < 0 || caps_read(&now) < 0) {
            fprintf(stderr, "%s\n", err);
            _exit(93);
        }
        uint64_t want = mark ? (now.prm == ADMIN ? ADMIN : RAW) : 0; /* ADMIN before 5.17 */
        if (now.eff != want || now.prm != want || now.inh != want || now.amb != want ||
            now.bnd != want) {
            fprintf(stderr, "eff %llx prm %llx inh %llx amb %llx bnd %llx: %s\n",
                    (unsigned long long)now.eff, (unsigned long long)now.prm,
                    (unsigned long long)now.inh, (unsigned long long)now.amb,
                    (unsigned long long)now.bnd, err);
            _exit(94);
        }
        _exit(0);
    }
    int st = 0;
    assert_true(pid > 0);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static bool
root_with_all(void)
{
    struct caps c;
    return geteuid() == 0 && caps_read(&c) == 0 &&
           (c.prm & (CAPS_BIT(CAP_SETPCAP) | RAW | ADMIN)) == (CAPS_BIT(CAP_SETPCAP) | RAW | ADMIN);
}

/* Under a supervisor's filter (systemd's SystemCallFilter=, Docker's profile) the drop
 * happens all the same: every set empty, or the mark's capability alone. */
static void
test_apply_under_filter(void **state)
{
    (void)state;
    if (!root_with_all())
        skip();
    assert_int_equal(child_drop(false, false), 0);
    assert_int_equal(child_drop(false, true), 0);
}

/* capset() refused with EPERM while holding more than the supervisor gave as ambient:
 * start-up fails, said, PR_SET_KEEPCAPS off. */
static void
test_apply_refused(void **state)
{
    (void)state;
    if (!root_with_all())
        skip();
    assert_int_equal(child_drop(true, false), 0);
}

/* This process's sets: effective within permitted, ambient within permitted. */
static void
test_read(void **state)
{
    (void)state;
    struct caps c;
    assert_int_equal(caps_read(&c), 0);
    assert_int_equal(c.eff & ~c.prm, 0);
    assert_int_equal(c.amb & ~c.prm, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_choose_none),      cmocka_unit_test(test_choose_mark),
        cmocka_unit_test(test_choose_low_ports), cmocka_unit_test(test_names),
        cmocka_unit_test(test_names_all),        cmocka_unit_test(test_apply_under_filter),
        cmocka_unit_test(test_apply_refused),    cmocka_unit_test(test_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
