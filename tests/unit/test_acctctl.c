/*
 * test_acctctl.c - src/acctctl.c: quota periods in UTC, the used bytes
 * against a mark and the over flag, the state file (round trip, every
 * malformed line with its FILE:LINE, a period that ended), the accounting
 * lines (escaping, deltas that add up) and the cap of the per-user series.
 *
 * Links acctctl.o with the registry (acct.o), limits (lim.o), the users
 * table (users.o and what it links) and the metrics text (metrics.o). The
 * shards' counters are set directly, as the shards' atomics would be.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acct.h"
#include "acctctl.h"
#include "metrics.h"
#include "policy.h"
#include "users.h"
#include "users_file.h"

/* 2025-12-31T23:59:59Z and the second after it. */
#define T_NYE 1767225599
#define T_NY  1767225600

static void
test_periods(void **state)
{
    (void)state;
    assert_int_equal(acctctl_period(LIM_PERIOD_DAY, 0), 0);
    assert_int_equal(acctctl_period(LIM_PERIOD_DAY, 86399), 0);
    assert_int_equal(acctctl_period(LIM_PERIOD_DAY, 86400), 1);
    assert_int_equal(acctctl_period(LIM_PERIOD_DAY, T_NYE), 20453);
    assert_int_equal(acctctl_period(LIM_PERIOD_DAY, T_NY), 20454);
    assert_int_equal(acctctl_period(LIM_PERIOD_MONTH, 0), 0);
    /* 1970-01-31T23:59:59Z, 1970-02-01T00:00:00Z */
    assert_int_equal(acctctl_period(LIM_PERIOD_MONTH, 31 * 86400 - 1), 0);
    assert_int_equal(acctctl_period(LIM_PERIOD_MONTH, 31 * 86400), 1);
    /* December 2025 is month 55 * 12 + 11; January 2026 the next. */
    assert_int_equal(acctctl_period(LIM_PERIOD_MONTH, T_NYE), 55 * 12 + 11);
    assert_int_equal(acctctl_period(LIM_PERIOD_MONTH, T_NY), 56 * 12);
    /* 2024-02-29 (leap day) is still February; 2024-03-01T00:00:00Z is March. */
    assert_int_equal(acctctl_period(LIM_PERIOD_MONTH, 1709251199), 54 * 12 + 1);
    assert_int_equal(acctctl_period(LIM_PERIOD_MONTH, 1709251200), 54 * 12 + 2);
    assert_int_equal(acctctl_period(LIM_PERIOD_TOTAL, T_NY), 0);
    assert_int_equal(acctctl_period(LIM_PERIOD_NONE, T_NY), 0);
}

static void
set_bytes(struct uacct *a, uint64_t up, uint64_t down)
{
    atomic_store(&a->n.bytes[0], up);
    atomic_store(&a->n.bytes[1], down);
}

static void
quota(struct uacct *a, uint64_t bytes, enum lim_period kind, bool close)
{
    a->ctl.q_bytes = bytes;
    a->ctl.q_kind = (uint8_t)kind;
    a->ctl.q_close = close;
}

static void
test_used_and_over(void **state)
{
    (void)state;
    struct acct_reg *reg = acct_reg_new();
    struct uacct *a = acct_get(reg, "alice");
    uint32_t now[4];
    acctctl_periods(T_NYE, now);
    set_bytes(a, 300, 200); /* before the quota: not counted */
    quota(a, 1000, LIM_PERIOD_DAY, true);
    assert_false(acctctl_quota_check(a, now));
    assert_int_equal(a->ctl.quota_mark, 500);
    assert_int_equal(acctctl_used(a), 0);
    set_bytes(a, 800, 699);
    assert_int_equal(acctctl_used(a), 999);
    assert_false(acctctl_quota_check(a, now));
    assert_false(atomic_load(&a->over_quota));
    set_bytes(a, 800, 700); /* 1000: the quota reached */
    assert_true(acctctl_quota_check(a, now));
    assert_true(atomic_load(&a->over_quota));
    assert_false(acctctl_quota_check(a, now)); /* closed once per period */
    assert_true(atomic_load(&a->over_quota));
    /* The quota raised: under again; over again later closes again. */
    quota(a, 2000, LIM_PERIOD_DAY, true);
    assert_false(acctctl_quota_check(a, now));
    assert_false(atomic_load(&a->over_quota));
    set_bytes(a, 1500, 1000);
    assert_true(acctctl_quota_check(a, now));
    /* A new day: counting starts from 0. */
    acctctl_periods(T_NY, now);
    assert_false(acctctl_quota_check(a, now));
    assert_false(atomic_load(&a->over_quota));
    assert_int_equal(acctctl_used(a), 0);
    set_bytes(a, 1600, 1000);
    assert_int_equal(acctctl_used(a), 100);
    /* Without quota_close: over, nothing to close. */
    quota(a, 50, LIM_PERIOD_DAY, false);
    assert_false(acctctl_quota_check(a, now));
    assert_true(atomic_load(&a->over_quota));
    /* Another kind of period (day -> total) starts again. */
    quota(a, 50, LIM_PERIOD_TOTAL, false);
    assert_false(acctctl_quota_check(a, now));
    assert_false(atomic_load(&a->over_quota));
    assert_int_equal(a->ctl.quota_kind, LIM_PERIOD_TOTAL);
    /* No quota: never over. */
    quota(a, 0, LIM_PERIOD_NONE, false);
    set_bytes(a, 1u << 30, 0);
    assert_false(acctctl_quota_check(a, now));
    assert_false(atomic_load(&a->over_quota));
    acct_reg_free(reg);
}

/* The effective quota: the users-file line's, else user_limits'. */
static void
test_limits(void **state)
{
    (void)state;
    char *h = hash_of("pw", "$6$", 1000), text[1024];
    snprintf(text, sizeof(text), "alice:%s quota=1k/day quota_close=yes\nbob:%s\n", h, h);
    struct policy pol = {.gen = 1};
    pol.users = users_from(text);
    lim_conf_unset(&pol.user_lim);
    assert_int_equal(lim_conf_parse(&pol.user_lim, LIM_KEYS_ALL, "quota=5M/month max_conns=3", text,
                                    sizeof(text)),
                     0);
    struct lim_conf l;
    acctctl_limits(&pol, "alice", &l);
    assert_int_equal(l.quota, 1000);
    assert_int_equal(l.quota_period, LIM_PERIOD_DAY);
    assert_int_equal(l.quota_close, 1);
    assert_int_equal(l.max_conns, 3);
    acctctl_limits(&pol, "bob", &l);
    assert_int_equal(l.quota, 5000000);
    assert_int_equal(l.quota_period, LIM_PERIOD_MONTH);
    assert_int_equal(lim_val(l.quota_close), 0);
    acctctl_limits(&pol, "nobody", &l); /* only in the state file: user_limits */
    assert_int_equal(l.quota, 5000000);
    users_free(pol.users);
    free(h);
}

static char dir[64];

static char *
tmp_path(const char *name)
{
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/ringsocks-test-acctctl.XXXXXX");
        assert_non_null(mkdtemp(dir));
    }
    char *p = malloc(256);
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

/* The file's first cap - 1 bytes, as a string. */
static void
read_text(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
}

static void
spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

#define ODD_NAME "c d%\"\\\x01\xc3\xa9"

static void
test_state_round_trip(void **state)
{
    (void)state;
    char *path = tmp_path("state");
    struct acct_reg *reg = acct_reg_new();
    uint32_t now[4];
    acctctl_periods(T_NYE, now);
    struct uacct *a = acct_get(reg, "alice"), *b = acct_get(reg, "bob");
    struct uacct *c = acct_get(reg, ODD_NAME), *d = acct_get(reg, "dave");
    quota(a, 1000, LIM_PERIOD_DAY, false);
    acctctl_quota_check(a, now);
    set_bytes(a, 123, 77);
    atomic_store(&b->blocked, true);
    quota(c, 1000, LIM_PERIOD_MONTH, false);
    acctctl_quota_check(c, now);
    set_bytes(c, 5, 0);
    atomic_store(&c->blocked, true);
    set_bytes(d, 9, 9); /* no quota, not blocked: not kept */
    assert_int_equal(acctctl_state_write(path, reg), 0);
    char text[1024];
    read_text(path, text, sizeof(text));
    assert_non_null(strstr(text, "ringsocks-state 1\n"));
    assert_non_null(strstr(text, "\nalice day 20453 200 0\n"));
    assert_non_null(strstr(text, "\nbob none 0 0 1\n"));
    assert_non_null(strstr(text, "\nc%20d%25\"\\%01%C3%A9 month 671 5 1\n"));
    assert_null(strstr(text, "dave"));
    /* No temp file is left beside it, and only its owner may read it. */
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* Read back into a fresh registry, as at a restart. */
    struct acct_reg *r2 = acct_reg_new();
    char err[512] = "";
    struct uacct *b2 = acct_get(r2, "bob"); /* already named by the users file */
    assert_int_equal(acctctl_state_read(path, r2, err, sizeof(err)), 0);
    assert_int_equal(acct_count(r2), 3);
    struct uacct *a2 = acct_find(r2, "alice"), *c2 = acct_find(r2, ODD_NAME);
    assert_non_null(a2);
    assert_non_null(c2);
    assert_ptr_equal(acct_find(r2, "bob"), b2);
    assert_null(acct_find(r2, "dave"));
    assert_int_equal(a2->ctl.quota_kind, LIM_PERIOD_DAY);
    assert_int_equal(a2->ctl.quota_period, 20453);
    assert_int_equal(acctctl_used(a2), 200);
    assert_false(atomic_load(&a2->blocked));
    assert_true(atomic_load(&b2->blocked));
    assert_int_equal(acctctl_used(c2), 5);
    assert_true(atomic_load(&c2->blocked));
    /* The same period goes on counting from there. */
    quota(a2, 1000, LIM_PERIOD_DAY, false);
    acctctl_quota_check(a2, now);
    set_bytes(a2, 50, 0);
    assert_int_equal(acctctl_used(a2), 250);
    acct_reg_free(r2);

    /* A period that ended while the file waited starts at 0. */
    r2 = acct_reg_new();
    assert_int_equal(acctctl_state_read(path, r2, err, sizeof(err)), 0);
    a2 = acct_find(r2, "alice");
    c2 = acct_find(r2, ODD_NAME);
    quota(a2, 1000, LIM_PERIOD_DAY, false);
    quota(c2, 1000, LIM_PERIOD_MONTH, false);
    acctctl_periods(T_NY, now);
    acctctl_quota_check(a2, now);
    acctctl_quota_check(c2, now);
    assert_int_equal(acctctl_used(a2), 0);
    assert_int_equal(a2->ctl.quota_period, 20454);
    assert_int_equal(acctctl_used(c2), 0);
    assert_int_equal(c2->ctl.quota_period, 672);
    assert_true(atomic_load(&c2->blocked)); /* a block has no period */
    acct_reg_free(r2);

    /* No file yet: no state, no error. */
    r2 = acct_reg_new();
    assert_int_equal(unlink(path), 0);
    assert_int_equal(acctctl_state_read(path, r2, err, sizeof(err)), 0);
    assert_int_equal(acct_count(r2), 0);
    acct_reg_free(r2);
    acct_reg_free(reg);
    free(path);
}

static void
test_state_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *text, *where, *why;
    } cases[] = {
        {"alice day 1 2 0\n", ":1:", "not a ringsocks state file"},
        {"ringsocks-state 2\n", ":1:", "version 1"},
        {"ringsocks-state 1\n# c\n\nalice day 1 2\n", ":4:", "4 words, not 5"},
        {"ringsocks-state 1\nalice day 1 2 0 x\n", ":2:", "6 words, not 5"},
        {"ringsocks-state 1\nalice week 1 2 0\n", ":2:", "period kind 'week'"},
        {"ringsocks-state 1\nalice day x 2 0\n", ":2:", "must be numbers"},
        {"ringsocks-state 1\nalice day 1 -2 0\n", ":2:", "must be numbers"},
        {"ringsocks-state 1\nalice day 1 2 2\n", ":2:", "must be numbers"},
        {"ringsocks-state 1\nalice day 4294967296 2 0\n", ":2:", "must be numbers"},
        {"ringsocks-state 1\nalice day 1 18446744073709551616 0\n", ":2:", "must be numbers"},
        {"ringsocks-state 1\nal%zzce day 1 2 0\n", ":2:", "not a user name"},
        {"ringsocks-state 1\nal%00ce day 1 2 0\n", ":2:", "not a user name"},
        {"ringsocks-state 1\nal%3Ace day 1 2 0\n", ":2:", "not a user name"},
        {"ringsocks-state 1\nalice day 1 2 0\nbob day 1 2 0\nalice day 1 2 0\n",
         ":4:", "user 'alice' again"},
    };
    char *path = tmp_path("bad");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[512] = "", want[300];
        spit(path, cases[i].text);
        struct acct_reg *reg = acct_reg_new();
        int rc = acctctl_state_read(path, reg, err, sizeof(err));
        snprintf(want, sizeof(want), "%s%s", path, cases[i].where);
        if (rc != -1 || strncmp(err, want, strlen(want)) != 0 || !strstr(err, cases[i].why))
            fail_msg("case %zu: rc %d, err '%s'; expected '%s ... %s'", i, rc, err, want,
                     cases[i].why);
        acct_reg_free(reg);
    }
    unlink(path);
    free(path);
}

static size_t
count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void
test_export_line(void **state)
{
    (void)state;
    struct acct_reg *reg = acct_reg_new();
    uint32_t now[4];
    acctctl_periods(T_NYE, now);
    struct uacct *a = acct_get(reg, ODD_NAME), *idle = acct_get(reg, "idle");
    (void)idle;
    quota(a, 1000, LIM_PERIOD_DAY, false);
    acctctl_quota_check(a, now);
    set_bytes(a, 10, 20);
    atomic_store(&a->n.opened, 3);
    atomic_store(&a->n.open, 1);
    atomic_store(&a->n.hits[LIMH_RATE], 2);
    struct acctctl_buf b = {0};
    assert_int_equal(acctctl_export(reg, T_NYE, 60, &b), 1);
    assert_string_equal(
        b.p, "{\"time\":\"2025-12-31T23:59:59Z\",\"interval_s\":60,\"user\":\"c "
             "d%\\\"\\\\\\u0001\\u00c3\\u00a9\",\"bytes_up\":10,\"bytes_down\":20,"
             "\"tunnels_opened\":3,\"tunnels_open\":1,\"limit_hits\":{\"max_conns\":0,\"rate\":2,"
             "\"quota\":0,\"blocked\":0,\"bandwidth\":0},\"quota_used\":30}\n");
    /* Nothing new, but a tunnel still open: a line of zeros; closed: no line. */
    b.len = 0;
    assert_int_equal(acctctl_export(reg, T_NY, 60, &b), 1);
    assert_non_null(strstr(b.p, "\"bytes_up\":0,\"bytes_down\":0,\"tunnels_opened\":0,"
                                "\"tunnels_open\":1"));
    atomic_store(&a->n.open, 0);
    b.len = 0;
    assert_int_equal(acctctl_export(reg, T_NY, 60, &b), 0);
    assert_int_equal(b.len, 0);
    free(b.p);
    acct_reg_free(reg);
}

/* Sum a numeric field over every line holding "user":"NAME". */
static uint64_t
sum_field(const char *text, const char *user, const char *field)
{
    char u[64], f[64];
    uint64_t sum = 0;
    snprintf(u, sizeof(u), "\"user\":\"%s\"", user);
    snprintf(f, sizeof(f), "\"%s\":", field);
    for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        const char *end = strchr(l, '\n'), *p = strstr(l, u), *q = strstr(l, f);
        if (p && p < end && q && q < end)
            sum += strtoull(q + strlen(f), NULL, 10);
    }
    return sum;
}

static void
test_export_adds_up(void **state)
{
    (void)state;
    struct acct_reg *reg = acct_reg_new();
    struct uacct *a = acct_get(reg, "alice"), *b = acct_get(reg, "bob");
    struct acctctl_buf out = {0};
    uint64_t up = 0, down = 0;
    for (unsigned i = 1; i <= 50; i++) {
        up += i * 1000 + 7;
        down += i * 31;
        set_bytes(a, up, down);
        atomic_store(&a->n.opened, i / 3);
        atomic_store(&a->n.hits[LIMH_BW], i * 2);
        if (i % 7 == 0)
            atomic_fetch_add(&b->n.bytes[1], i);
        acctctl_export(reg, T_NY + i * 60, 60, &out);
    }
    assert_int_equal(sum_field(out.p, "alice", "bytes_up"), up);
    assert_int_equal(sum_field(out.p, "alice", "bytes_down"), down);
    assert_int_equal(sum_field(out.p, "alice", "tunnels_opened"), 50 / 3);
    assert_int_equal(sum_field(out.p, "alice", "bandwidth"), 100);
    assert_int_equal(sum_field(out.p, "bob", "bytes_down"), atomic_load(&b->n.bytes[1]));
    /* bob had activity in 7 of the intervals only: one line for each. */
    assert_int_equal(count_lines(out.p), 50 + 7);
    free(out.p);
    acct_reg_free(reg);
}

static void
test_metrics_cap(void **state)
{
    (void)state;
    struct acct_reg *reg = acct_reg_new();
    struct uacct *u[5];
    char name[8];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "u%d", i);
        u[i] = acct_get(reg, name);
    }
    set_bytes(u[1], 100, 1000);
    set_bytes(u[2], 7, 0); /* labelled: the second active user */
    set_bytes(u[4], 3, 4);
    atomic_store(&u[4]->n.open, 2);
    atomic_store(&u[3]->n.hits[LIMH_CONNS], 5);
    uint32_t rank = 0;
    struct metrics_user *m;
    size_t n = acctctl_metrics_users(reg, 2, &rank, &m);
    assert_int_equal(n, 3);
    assert_string_equal(m[0].name, "u1");
    assert_string_equal(m[1].name, "u2");
    assert_null(m[2].name);
    /* other: u0, u3, u4 */
    assert_int_equal(m[2].bytes[0], 3);
    assert_int_equal(m[2].bytes[1], 4);
    assert_int_equal(m[2].open, 2);
    assert_int_equal(m[2].hits[LIMH_CONNS], 5);
    free(m);
    /* Sticky: u0 becomes the busiest, the labelled set stays. */
    set_bytes(u[0], 1 << 20, 0);
    n = acctctl_metrics_users(reg, 2, &rank, &m);
    assert_int_equal(n, 3);
    assert_string_equal(m[0].name, "u1");
    assert_string_equal(m[1].name, "u2");
    assert_int_equal(m[2].bytes[0], (1 << 20) + 3);
    /* The text: "other" is the sum of the rest, a user called "other" stays apart. */
    m[0].name = "other";
    char text[16384];
    size_t len = metrics_render_users(text, sizeof(text), m, n);
    assert_true(len < sizeof(text));
    assert_non_null(strstr(text, "ringsocks_user_bytes_total{user=\"other\",direction=\"up\"} "
                                 "1048579\n"));
    assert_non_null(
        strstr(text, "ringsocks_user_bytes_total{user=\"\\\\x6fther\",direction=\"down\"} 1000\n"));
    assert_non_null(strstr(text, "ringsocks_user_tunnels_open{user=\"other\"} 2\n"));
    assert_non_null(
        strstr(text, "ringsocks_user_limit_hits_total{user=\"other\",limit=\"max_conns\"} 5\n"));
    /* Escaping: quote and backslash, control bytes and invalid UTF-8 as \xNN, valid UTF-8 kept. */
    m[1].name = "a\"b\\c\n\xc3\xa9\xff";
    len = metrics_render_users(text, sizeof(text), m, n);
    assert_non_null(strstr(text, "{user=\"a\\\"b\\\\x5cc\\\\x0a\xc3\xa9\\\\xff\",direction="));
    free(m);
    /* 0: no per-user series at all. */
    assert_int_equal(acctctl_metrics_users(reg, 0, &rank, &m), 0);
    assert_null(m);
    assert_int_equal(metrics_render_users(text, sizeof(text), NULL, 0), 0);
    acct_reg_free(reg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_periods),         cmocka_unit_test(test_used_and_over),
        cmocka_unit_test(test_limits),          cmocka_unit_test(test_state_round_trip),
        cmocka_unit_test(test_state_malformed), cmocka_unit_test(test_export_line),
        cmocka_unit_test(test_export_adds_up),  cmocka_unit_test(test_metrics_cap),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (dir[0])
        rmdir(dir);
    return rc;
}
