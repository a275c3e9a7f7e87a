/*
 * test_metrics.c - Prometheus text of two fake shards: exact values, sums,
 * the cumulative DNS histogram, the snprintf-like length protocol, and
 * promtool's verdict on the whole text.
 *
 * Links metrics.o with conn_end.o (the end-reason names): the metrics read
 * counters (struct shard_stats) and nothing else of a shard.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "conn_end.h"
#include "metrics.h"
#include "stats.h"

/* What a shard shows the metrics. */
struct fake_shard {
    unsigned id;
    uint32_t n_open;
    struct shard_stats st;
};

struct fixture {
    struct fake_shard *sh; /* two shards */
    struct metrics_shard ms[2];
    struct ctl_stats cs;
    char *text;
    size_t len;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->sh = calloc(2, sizeof(struct fake_shard));
    assert_non_null(f->sh);
    for (unsigned i = 0; i < 2; i++)
        f->ms[i] = (struct metrics_shard){.id = i, .st = &f->sh[i].st, .n_open = &f->sh[i].n_open};

    struct fake_shard *a = &f->sh[0], *b = &f->sh[1];
    a->id = 0;
    b->id = 1;
    a->n_open = 7;
    b->n_open = 5;
    a->st.accepted = 1000;
    b->st.accepted = 234;
    a->st.accept_dropped = 3;
    b->st.accept_pauses = 2;
    a->st.tunnels = 900;
    a->st.ended[END_DONE] = 800;
    b->st.ended[END_DONE] = 11;
    b->st.ended[END_HS_TIMEOUT] = 4;
    a->st.ended[END_WRITE_TIMEOUT] = 5;
    a->st.bytes[STAT_UP] = 1ull << 40;
    b->st.bytes[STAT_UP] = 1;
    a->st.bytes[STAT_DOWN] = 123456789;
    a->st.auth_cache_hits = 50;
    b->st.auth_cache_hits = 25;
    a->st.auth_slow_checks = 6;
    b->st.auth_failures = 9;
    a->st.auth_overload = 1;
    a->st.auth_deferred = 30;
    b->st.auth_deferred = 2;
    b->st.auth_abandoned = 19;
    a->st.auth_cancelled = 11;
    b->st.acl_denied = 17;
    b->st.via_parent_failures = 3;
    a->st.dns_queries = 40;
    b->st.dns_cache_hits = 60;
    /* bucket i counts answers in (bound[i-1], bound[i]]; the last is > 5 s. */
    a->st.dns_lat[0] = 10;
    b->st.dns_lat[0] = 5;
    a->st.dns_lat[3] = 4;
    b->st.dns_lat[10] = 2;
    a->st.dns_lat[DNS_LAT_BUCKETS - 1] = 1;
    a->st.dns_lat_sum_us = 7654321;
    b->st.dns_lat_sum_us = 1000000;
    a->st.udp_dropped = 8;
    b->st.pipe_fallbacks = 12;
    a->st.pipe_small = 3;
    b->st.pipe_small = 4;
    b->st.splice_switches = 5;
    a->st.spills = 9;
    b->st.spills = 2;
    a->st.spilled_bytes = 32768;
    b->st.spilled_bytes = 100;
    a->st.pipes_idle = 30;
    b->st.pipes_idle = 2;
    a->st.hs_waits = 6;
    b->st.auth_coalesced = 8;
    a->st.close_cancels = 13;
    b->st.stale_cqes = 14;
    a->st.replies[1][0] = 600;
    b->st.replies[1][0] = 66;
    b->st.replies[1][4] = 3;
    a->st.replies[3][0] = 2;
    a->st.replies[0][9] = 21;
    a->st.open_by_cmd[1] = 4;
    b->st.open_by_cmd[1] = 3;
    b->st.open_by_cmd[2] = 1;
    a->st.inflight = 42;
    f->ms[0].bufs_resident = 1 << 20;
    f->ms[1].bufs_resident = -1; /* unknown: no sample */
    a->st.sq_full = 7;
    b->st.sq_retries = 3;
    f->ms[0].gss.contexts = 5;
    f->ms[1].gss.contexts = 2;
    f->ms[1].gss.refused = 3;
    f->ms[0].gss.levels[0] = 1;
    f->ms[1].gss.levels[2] = 4;
    f->ms[0].gss.level_refused = 6;
    f->ms[0].gss.tunnels = 9;
    f->ms[1].gss.open = 2;
    f->ms[0].gss.wrapped = 100;
    f->ms[1].gss.unwrapped = 70;
    f->ms[1].gss.frame_errors = 1;
    f->ms[0].gss.dgram_errors = 2;
    f->ms[1].gss.dgram_errors = 3;
    b->st.inflight = 0;
    a->st.loops = 99999;
    b->st.loops = 12;

    f->cs.reloads_ok = 3;
    f->cs.reloads_failed = 1;
    f->cs.last_reload_ok_time = 1700000000.25;
    f->cs.draining = 1;
    f->cs.log_written = 811;
    f->cs.log_dropped = 2;
    f->cs.start_time = 1699999999.5;
    f->cs.max_conns = 100;
    f->cs.last_reload_ok = 0;
    f->cs.last_reload_time = 1700000100.5;
    assert_int_equal(metrics_process_read(&f->cs.proc), 0);

    f->len = metrics_render(NULL, 0, f->ms, 2, &f->cs);
    assert_true(f->len > 0);
    f->text = malloc(f->len + 1);
    assert_non_null(f->text);
    assert_int_equal(metrics_render(f->text, f->len + 1, f->ms, 2, &f->cs), f->len);
    assert_int_equal(strlen(f->text), f->len);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    free(f->text);
    free(f->sh);
    free(f);
    return 0;
}

/* The value of the sample whose name-and-labels is exactly series; fails if absent. */
static const char *
sample(const char *text, const char *series)
{
    static char val[64];
    size_t n = strlen(series);
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        assert_non_null(eol);
        if (p[0] != '#' && strncmp(p, series, n) == 0 && p[n] == ' ') {
            size_t vl = (size_t)(eol - (p + n + 1));
            assert_true(vl < sizeof(val));
            memcpy(val, p + n + 1, vl);
            val[vl] = '\0';
            return val;
        }
        p = eol + 1;
    }
    fail_msg("series %s missing", series);
    return NULL;
}

/* The ended-connections series of reason why. */
static const char *
ended(enum conn_end why)
{
    static char series[96];
    snprintf(series, sizeof(series), "ringsocks_connections_ended_total{reason=\"%s\"}",
             conn_end_str(why));
    return series;
}

static void
test_values(void **state)
{
    struct fixture *f = *state;
    const char *t = f->text;

    assert_string_equal(sample(t, "ringsocks_connections_accepted_total"), "1234");
    assert_string_equal(sample(t, "ringsocks_gss_contexts_total"), "7");
    assert_string_equal(sample(t, "ringsocks_gss_refused_total"), "3");
    assert_string_equal(sample(t, "ringsocks_gss_levels_total{level=\"0\"}"), "1");
    assert_string_equal(sample(t, "ringsocks_gss_levels_total{level=\"1\"}"), "0");
    assert_string_equal(sample(t, "ringsocks_gss_levels_total{level=\"2\"}"), "4");
    assert_string_equal(sample(t, "ringsocks_gss_level_refused_total"), "6");
    assert_string_equal(sample(t, "ringsocks_gss_protected_tunnels_total"), "9");
    assert_string_equal(sample(t, "ringsocks_gss_protected_open"), "2");
    assert_string_equal(sample(t, "ringsocks_gss_messages_total{direction=\"wrap\"}"), "100");
    assert_string_equal(sample(t, "ringsocks_gss_messages_total{direction=\"unwrap\"}"), "70");
    assert_string_equal(sample(t, "ringsocks_gss_frame_errors_total"), "1");
    assert_string_equal(sample(t, "ringsocks_gss_datagram_errors_total"), "5");
    assert_string_equal(sample(t, "ringsocks_connections_dropped_total"), "3");
    assert_string_equal(sample(t, "ringsocks_accept_pauses_total"), "2");
    assert_string_equal(sample(t, "ringsocks_connections_open"), "12");
    assert_string_equal(sample(t, ended(END_DONE)), "811");
    assert_string_equal(sample(t, ended(END_HS_TIMEOUT)), "4");
    assert_string_equal(sample(t, ended(END_WRITE_TIMEOUT)), "5");
    assert_string_equal(sample(t, ended(END_SHUTDOWN)), "0");
    assert_string_equal(sample(t, ended(END_NONE)), "0");
    size_t reasons = 0;
    for (const char *p = t; (p = strstr(p, "\nringsocks_connections_ended_total{")); p++)
        reasons++;
    assert_int_equal(reasons, END__COUNT);
    assert_string_equal(sample(t, "ringsocks_tunnels_open{command=\"connect\"}"), "7");
    assert_string_equal(sample(t, "ringsocks_tunnels_open{command=\"bind\"}"), "1");
    assert_string_equal(sample(t, "ringsocks_tunnels_open{command=\"udp\"}"), "0");
    assert_string_equal(
        sample(t, "ringsocks_tunnels_total{command=\"connect\",reply=\"succeeded\"}"), "666");
    assert_string_equal(
        sample(t, "ringsocks_tunnels_total{command=\"connect\",reply=\"host_unreachable\"}"), "3");
    assert_string_equal(sample(t, "ringsocks_tunnels_total{command=\"udp\",reply=\"succeeded\"}"),
                        "2");
    assert_string_equal(sample(t, "ringsocks_tunnels_total{command=\"none\",reply=\"none\"}"),
                        "21");
    assert_string_equal(
        sample(t, "ringsocks_tunnels_total{command=\"bind\",reply=\"address_type_not_supported\"}"),
        "0");
    assert_string_equal(sample(t, "ringsocks_relay_bytes_total{direction=\"up\"}"),
                        "1099511627777");
    assert_string_equal(sample(t, "ringsocks_relay_bytes_total{direction=\"down\"}"), "123456789");
    assert_string_equal(sample(t, "ringsocks_auth_cache_hits_total"), "75");
    assert_string_equal(sample(t, "ringsocks_auth_slow_checks_total"), "6");
    assert_string_equal(sample(t, "ringsocks_auth_failures_total"), "9");
    assert_string_equal(sample(t, "ringsocks_auth_overload_total"), "1");
    assert_string_equal(sample(t, "ringsocks_auth_deferred_total"), "32");
    assert_string_equal(sample(t, "ringsocks_auth_abandoned_total"), "19");
    assert_string_equal(sample(t, "ringsocks_auth_cancelled_total"), "11");
    assert_string_equal(sample(t, "ringsocks_acl_denied_total"), "17");
    assert_string_equal(sample(t, "ringsocks_via_parent_failures_total"), "3");
    assert_string_equal(sample(t, "ringsocks_dns_queries_total"), "40");
    assert_string_equal(sample(t, "ringsocks_dns_cache_hits_total"), "60");
    assert_string_equal(sample(t, "ringsocks_udp_datagrams_dropped_total"), "8");
    assert_string_equal(sample(t, "ringsocks_pipe_fallbacks_total"), "12");
    assert_string_equal(sample(t, "ringsocks_pipes_small_total"), "7");
    assert_string_equal(sample(t, "ringsocks_relay_splice_switches_total"), "5");
    assert_string_equal(sample(t, "ringsocks_relay_spills_total"), "11");
    assert_string_equal(sample(t, "ringsocks_relay_spilled_bytes"), "32868");
    assert_string_equal(sample(t, "ringsocks_pipes_idle"), "32");
    assert_string_equal(sample(t, "ringsocks_handshake_waits_total"), "6");
    assert_string_equal(sample(t, "ringsocks_auth_coalesced_total"), "8");
    assert_string_equal(sample(t, "ringsocks_close_cancels_total"), "13");
    assert_string_equal(sample(t, "ringsocks_stale_completions_total"), "14");
    assert_string_equal(sample(t, "ringsocks_shard_loop_iterations_total{shard=\"0\"}"), "99999");
    assert_string_equal(sample(t, "ringsocks_shard_loop_iterations_total{shard=\"1\"}"), "12");
    assert_string_equal(sample(t, "ringsocks_shard_inflight_ops{shard=\"0\"}"), "42");
    assert_string_equal(sample(t, "ringsocks_shard_inflight_ops{shard=\"1\"}"), "0");
    assert_string_equal(sample(t, "ringsocks_relay_buffers_resident_bytes{shard=\"0\"}"),
                        "1048576");
    assert_null(strstr(t, "ringsocks_relay_buffers_resident_bytes{shard=\"1\"}"));
    assert_string_equal(sample(t, "ringsocks_shard_sq_full_total{shard=\"0\"}"), "7");
    assert_string_equal(sample(t, "ringsocks_shard_sq_full_total{shard=\"1\"}"), "0");
    assert_string_equal(sample(t, "ringsocks_shard_sq_retries_total{shard=\"0\"}"), "0");
    assert_string_equal(sample(t, "ringsocks_shard_sq_retries_total{shard=\"1\"}"), "3");
    assert_string_equal(sample(t, "ringsocks_reloads_total{result=\"ok\"}"), "3");
    assert_string_equal(sample(t, "ringsocks_reloads_total{result=\"failed\"}"), "1");
    assert_string_equal(sample(t, "ringsocks_last_reload_success_timestamp_seconds"),
                        "1700000000.250");
    assert_string_equal(sample(t, "ringsocks_draining"), "1");
    assert_string_equal(sample(t, "ringsocks_access_log_lines_total"), "811");
    assert_string_equal(sample(t, "ringsocks_access_log_dropped_total"), "2");
    assert_string_equal(sample(t, "ringsocks_start_time_seconds"), "1699999999.500");
    assert_string_equal(sample(t, "ringsocks_build_info{version=\"0.1.0\"}"), "1");
    /* max_conns minus the 12 open on both shards; the last reload failed. */
    assert_string_equal(sample(t, "ringsocks_max_conns_headroom"), "88");
    assert_string_equal(sample(t, "ringsocks_last_reload_success"), "0");
    assert_string_equal(sample(t, "ringsocks_last_reload_timestamp_seconds"), "1700000100.500");
    /* The process series of this very test process, with plausible values. */
    assert_true(f->cs.proc.ok);
    assert_true(strtoull(sample(t, "process_open_fds"), NULL, 10) >= 3);
    assert_true(strtoull(sample(t, "process_max_fds"), NULL, 10) >= 64);
    assert_true(strtoull(sample(t, "process_resident_memory_bytes"), NULL, 10) > 100000);
    assert_true(strtoull(sample(t, "process_virtual_memory_bytes"), NULL, 10) >=
                strtoull(sample(t, "process_resident_memory_bytes"), NULL, 10));
    assert_true(strtod(sample(t, "process_cpu_seconds_total"), NULL) >= 0);
    assert_true(strtod(sample(t, "process_start_time_seconds"), NULL) > 1600000000.0);
    assert_non_null(strstr(t, "# TYPE process_cpu_seconds_total counter\n"));

    assert_non_null(strstr(t, "# TYPE ringsocks_connections_accepted_total counter\n"));
    assert_non_null(strstr(t, "# TYPE ringsocks_connections_open gauge\n"));
    assert_non_null(strstr(t, "# HELP ringsocks_tunnels_total "));
    assert_non_null(strstr(t, "# TYPE ringsocks_dns_lookup_duration_seconds histogram\n"));
}

/* The +Inf bucket is the count, every bucket is >= the one before, and le increases. */
static void
test_histogram(void **state)
{
    struct fixture *f = *state;
    static const char *const want[][2] = {
        {"0.001", "15"}, {"0.002", "15"}, {"0.005", "15"}, {"0.01", "19"}, {"0.025", "19"},
        {"0.05", "19"},  {"0.1", "19"},   {"0.25", "19"},  {"0.5", "19"},  {"1", "19"},
        {"2.5", "21"},   {"5", "21"},     {"+Inf", "22"},
    };
    char series[128];
    uint64_t prev = 0;
    double prev_le = 0;

    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        snprintf(series, sizeof(series), "ringsocks_dns_lookup_duration_seconds_bucket{le=\"%s\"}",
                 want[i][0]);
        const char *v = sample(f->text, series);
        assert_string_equal(v, want[i][1]);
        uint64_t n = strtoull(v, NULL, 10);
        assert_true(n >= prev);
        prev = n;
        if (strcmp(want[i][0], "+Inf") != 0) {
            double le = strtod(want[i][0], NULL);
            assert_true(le > prev_le);
            prev_le = le;
        }
    }
    assert_string_equal(sample(f->text, "ringsocks_dns_lookup_duration_seconds_count"), "22");
    assert_string_equal(sample(f->text, "ringsocks_dns_lookup_duration_seconds_sum"), "8.654321");
    /* Exactly the 13 buckets, no more. */
    size_t buckets = 0;
    for (const char *p = f->text; (p = strstr(p, "_seconds_bucket{")); p++)
        buckets++;
    assert_int_equal(buckets, DNS_LAT_BUCKETS);
}

static void
test_small_buffer(void **state)
{
    struct fixture *f = *state;
    char *buf = malloc(f->len + 1);
    assert_non_null(buf);

    /* Too small: the needed length, and a NUL-terminated prefix of the text. */
    memset(buf, 'x', f->len + 1);
    assert_int_equal(metrics_render(buf, 100, f->ms, 2, &f->cs), f->len);
    assert_int_equal(buf[99], '\0');
    assert_memory_equal(buf, f->text, 99);
    assert_int_equal(buf[100], 'x');

    /* Exactly the text but no room for the NUL: still "does not fit". */
    memset(buf, 'x', f->len + 1);
    assert_int_equal(metrics_render(buf, f->len, f->ms, 2, &f->cs), f->len);
    assert_int_equal(buf[f->len], 'x');

    assert_int_equal(metrics_render(buf, 1, f->ms, 2, &f->cs), f->len);
    assert_int_equal(buf[0], '\0');
    assert_int_equal(metrics_render(buf, f->len + 1, f->ms, 2, &f->cs), f->len);
    assert_string_equal(buf, f->text);
    free(buf);
}

/* No shards at all: still valid text, zero sums, no per-shard samples. */
static void
test_no_shards(void **state)
{
    struct fixture *f = *state;
    size_t n = metrics_render(NULL, 0, NULL, 0, &f->cs);
    char *buf = malloc(n + 1);
    assert_non_null(buf);
    assert_int_equal(metrics_render(buf, n + 1, NULL, 0, &f->cs), n);
    assert_string_equal(sample(buf, "ringsocks_connections_accepted_total"), "0");
    assert_string_equal(sample(buf, "ringsocks_dns_lookup_duration_seconds_count"), "0");
    assert_null(strstr(buf, "{shard="));
    free(buf);
}

/* promtool check metrics finds nothing to say about text (skipped without promtool). */
static void
promtool_ok(const char *text, size_t len)
{
    char path[] = "/tmp/test_metrics.XXXXXX";
    char cmd[256], out[4096];

    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        print_message("promtool not found (Debian package prometheus): check skipped\n");
        skip();
    }
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);

    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    unlink(path);
    if (n)
        print_message("promtool: %s", out);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(n, 0);
}

static void
test_promtool(void **state)
{
    struct fixture *f = *state;
    promtool_ok(f->text, f->len);
}

/*
 * The per-user families after the rest, with names a label must escape (quote, backslash,
 * newline, invalid UTF-8), valid UTF-8, a user called "other" and the sum of the others.
 */
static void
test_users_promtool(void **state)
{
    struct fixture *f = *state;
    struct metrics_user u[5] = {
        {.name = "alice", .bytes = {10, 20}, .opened = 3, .open = 1, .quota_used = 30},
        {.name = "q\"b\\s\nl\xff", .hits = {[LIMH_RATE] = 2}},
        {.name = "\xc3\xa9t\xc3\xa9"},
        {.name = "other", .bytes = {1, 1}},
        {.name = NULL, .bytes = {100, 200}, .opened = 9},
    };
    size_t n = metrics_render_users(NULL, 0, u, 5);
    char *text = malloc(f->len + n + 1);
    assert_non_null(text);
    memcpy(text, f->text, f->len);
    assert_int_equal(metrics_render_users(text + f->len, n + 1, u, 5), n);
    assert_non_null(
        strstr(text, "ringsocks_user_bytes_total{user=\"other\",direction=\"down\"} 200\n"));
    assert_non_null(strstr(text, "{user=\"q\\\"b\\\\x5cs\\\\x0al\\\\xff\",limit=\"rate\"} 2\n"));
    assert_non_null(strstr(text, "ringsocks_user_tunnels_open{user=\"\xc3\xa9t\xc3\xa9\"} 0\n"));
    promtool_ok(text, f->len + n);
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),       cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_small_buffer), cmocka_unit_test(test_no_shards),
        cmocka_unit_test(test_promtool),     cmocka_unit_test(test_users_promtool),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
