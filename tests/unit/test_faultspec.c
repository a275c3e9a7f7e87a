/*
 * test_faultspec.c - src/faultspec.c: every fault name and alias parses to its kind and
 * argument; arguments out of range, missing or extra are refused with the parser's message;
 * fault_format's text parses back to the same set for every kind; a user name's "-fault-"
 * parameters (fault_user_params): the base name, several faults, a name starting with the
 * keyword, an empty or unknown fault after it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "faultspec.h"

/* s parsed alone: its set must hold exactly kind k with argument arg. */
static void
parses_to(const char *s, enum fault_kind k, uint32_t arg)
{
    struct fault_set f;
    char err[400] = "";
    memset(&f, 0, sizeof(f));
    if (fault_parse(s, strlen(s), &f, err, sizeof(err)) != 0)
        fail_msg("'%s' refused: %s", s, err);
    if (f.kinds != (1u << k) || f.arg[k] != arg)
        fail_msg("'%s': kinds %#x arg %u, want kind %d arg %u", s, f.kinds, f.arg[k], (int)k, arg);
}

/* s is refused with a message holding want; the set is left as it was. */
static void
refused(const char *s, const char *want)
{
    struct fault_set f;
    char err[400] = "";
    memset(&f, 0, sizeof(f));
    f.kinds = 1u << FAULT_WRONG_BND;
    if (fault_parse(s, strlen(s), &f, err, sizeof(err)) != -EINVAL)
        fail_msg("'%s' accepted", s);
    if (!strstr(err, want))
        fail_msg("'%s': message '%s' lacks '%s'", s, err, want);
    assert_int_equal(f.kinds, 1u << FAULT_WRONG_BND);
}

static void
test_names(void **state)
{
    (void)state;
    parses_to("reply_1", FAULT_REPLY, 1);
    parses_to("reply_8", FAULT_REPLY, 8);
    parses_to("reply_0x05", FAULT_REPLY, 5);
    parses_to("reply_0X5B", FAULT_REPLY4, 0x5b);
    parses_to("reply_91", FAULT_REPLY4, 0x5b);
    parses_to("reply_0x5d", FAULT_REPLY4, 0x5d);
    parses_to("general_failure", FAULT_REPLY, 0x01);
    parses_to("not_allowed", FAULT_REPLY, 0x02);
    parses_to("net_unreachable", FAULT_REPLY, 0x03);
    parses_to("host_unreachable", FAULT_REPLY, 0x04);
    parses_to("refused", FAULT_REPLY, 0x05);
    parses_to("ttl_expired", FAULT_REPLY, 0x06);
    parses_to("cmd_unsupported", FAULT_REPLY, 0x07);
    parses_to("atyp_unsupported", FAULT_REPLY, 0x08);
    parses_to("rejected", FAULT_REPLY4, 0x5b);
    parses_to("no_identd", FAULT_REPLY4, 0x5c);
    parses_to("identd_mismatch", FAULT_REPLY4, 0x5d);
    parses_to("no_method", FAULT_NO_METHOD, 0);
    parses_to("auth_fail", FAULT_AUTH_FAIL, 0);
    parses_to("delay_method_1", FAULT_DELAY_METHOD, 1);
    parses_to("delay_auth_300", FAULT_DELAY_AUTH, 300);
    parses_to("delay_reply_60000", FAULT_DELAY_REPLY, 60000);
    parses_to("split_50", FAULT_SPLIT, 50);
    parses_to("truncate_0", FAULT_TRUNCATE, 0);
    parses_to("truncate_21", FAULT_TRUNCATE, 21);
    parses_to("wrong_bnd", FAULT_WRONG_BND, 0);
    parses_to("bind_peer", FAULT_BIND_PEER, 0);
    parses_to("rst_down_0", FAULT_RST_DOWN, 0);
    parses_to("rst_up_1000", FAULT_RST_UP, 1000);
    parses_to("fin_down_4294967295", FAULT_FIN_DOWN, 4294967295u);
    parses_to("fin_up_7", FAULT_FIN_UP, 7);
    parses_to("throttle_100000", FAULT_THROTTLE, 100000);
    parses_to("udp_drop_100", FAULT_UDP_DROP, 100);
    parses_to("udp_dup_1", FAULT_UDP_DUP, 1);
    parses_to("udp_reorder_50", FAULT_UDP_REORDER, 50);
    parses_to("udp_frag", FAULT_UDP_FRAG, 1);
    parses_to("udp_frag_255", FAULT_UDP_FRAG, 255);
    /* The length bounds the name: what follows it is not read. */
    struct fault_set f;
    char err[400];
    memset(&f, 0, sizeof(f));
    assert_int_equal(fault_parse("split_50,junk", 8, &f, err, sizeof(err)), 0);
    assert_int_equal(f.arg[FAULT_SPLIT], 50);
    /* One of each kind, the last one given wins; others add to the set. */
    assert_int_equal(fault_parse("split_60", 8, &f, err, sizeof(err)), 0);
    assert_int_equal(fault_parse("refused", 7, &f, err, sizeof(err)), 0);
    assert_int_equal(f.kinds, (1u << FAULT_SPLIT) | (1u << FAULT_REPLY));
    assert_int_equal(f.arg[FAULT_SPLIT], 60);
    /* Every kind has a name of its own (the log's and the metrics'). */
    for (unsigned k = 0; k < FAULT__COUNT; k++)
        assert_string_not_equal(fault_name((enum fault_kind)k), "?");
    assert_string_equal(fault_name(FAULT_REPLY), "reply");
    assert_string_equal(fault_name(FAULT_RST_DOWN), "rst_down");
}

static void
test_refused(void **state)
{
    (void)state;
    /* Unknown names, and a known one as a prefix of another word. */
    refused("bogus", "unknown fault 'bogus' (refused, reply_N");
    refused("", "unknown fault ''");
    refused("refusedx", "unknown fault 'refusedx'");
    refused("Refused", "unknown fault 'Refused'");
    refused("split-50", "unknown fault 'split-50'");
    /* Missing arguments. */
    refused("split", "fault 'split': split needs an argument (split_N)");
    refused("reply", "fault 'reply': reply needs an argument (reply_N)");
    refused("delay_method", "delay_method needs an argument");
    refused("delay_auth", "delay_auth needs an argument");
    refused("delay_reply", "delay_reply needs an argument");
    refused("truncate", "truncate needs an argument");
    refused("rst_down", "rst_down needs an argument");
    refused("rst_up", "rst_up needs an argument");
    refused("fin_down", "fin_down needs an argument");
    refused("fin_up", "fin_up needs an argument");
    refused("throttle", "throttle needs an argument");
    refused("udp_drop", "udp_drop needs an argument");
    refused("udp_dup", "udp_dup needs an argument");
    refused("udp_reorder", "udp_reorder needs an argument");
    /* Extra arguments. */
    refused("refused_5", "fault 'refused_5': refused takes no argument");
    refused("no_identd_1", "no_identd takes no argument");
    refused("no_method_1", "no_method takes no argument");
    refused("auth_fail_1", "auth_fail takes no argument");
    refused("wrong_bnd_9", "wrong_bnd takes no argument");
    refused("bind_peer_1", "bind_peer takes no argument");
    /* Out of range, or not a number. */
    refused("reply_0", "fault 'reply_0': a reply code is 1-8 (SOCKS5) or 0x5b-0x5d (SOCKS4)");
    refused("reply_9", "a reply code is 1-8");
    refused("reply_0x5a", "a reply code is 1-8");
    refused("reply_0x5e", "a reply code is 1-8");
    refused("reply_0x", "a reply code is 1-8");
    refused("reply_", "a reply code is 1-8");
    refused("delay_method_0", "fault 'delay_method_0': delay_method takes a whole number 1-60000");
    refused("delay_auth_60001", "delay_auth takes a whole number 1-60000");
    refused("delay_reply_-1", "delay_reply takes a whole number 1-60000");
    refused("split_0", "split takes a whole number 1-60000");
    refused("split_0x10", "split takes a whole number 1-60000");
    refused("truncate_22", "truncate takes a whole number 0-21");
    refused("rst_down_4294967296", "rst_down takes a whole number 0-4294967295");
    refused("rst_up_12345678901", "rst_up takes a whole number 0-4294967295");
    refused("fin_down_1k", "fin_down takes a whole number");
    refused("fin_up_", "fin_up takes a whole number");
    refused("throttle_0", "throttle takes a whole number 1-4294967295");
    refused("udp_drop_0", "udp_drop takes a whole number 1-100");
    refused("udp_dup_101", "udp_dup takes a whole number 1-100");
    refused("udp_reorder_0", "udp_reorder takes a whole number 1-100");
    refused("udp_frag_0", "udp_frag takes a whole number 1-255");
    refused("udp_frag_256", "udp_frag takes a whole number 1-255");
}

/* f's text, split at ',' and parsed again, is f. */
static void
round_trip(const struct fault_set *f)
{
    char text[1024];
    size_t n = fault_format(f, text, sizeof(text));
    assert_int_equal(n, strlen(text));
    struct fault_set g;
    memset(&g, 0, sizeof(g));
    for (const char *s = text; n > 0 && *s;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        char err[400];
        if (fault_parse(s, len, &g, err, sizeof(err)) != 0)
            fail_msg("'%s' does not parse back: %s", text, err);
        s += len + (comma ? 1 : 0);
    }
    if (g.kinds != f->kinds)
        fail_msg("'%s': kinds %#x, want %#x", text, g.kinds, f->kinds);
    for (unsigned k = 0; k < FAULT__COUNT; k++)
        if (fault_has(f, (enum fault_kind)k) && g.arg[k] != f->arg[k])
            fail_msg("'%s': kind %u arg %u, want %u", text, k, g.arg[k], f->arg[k]);
}

static void
test_format(void **state)
{
    (void)state;
    /* A name of each kind, with an argument off its default. */
    static const char *const one[] = {
        "not_allowed",     "no_identd",        "no_method",   "auth_fail",     "delay_method_17",
        "delay_auth_300",  "delay_reply_9999", "split_3",     "truncate_0",    "wrong_bnd",
        "bind_peer",       "rst_down_1000",    "rst_up_0",    "fin_down_5",    "fin_up_4294967295",
        "throttle_100000", "udp_drop_10",      "udp_dup_100", "udp_reorder_1", "udp_frag_7",
    };
    _Static_assert(sizeof(one) / sizeof(one[0]) == FAULT__COUNT, "a name for every kind");
    struct fault_set all;
    char err[400], text[1024];
    memset(&all, 0, sizeof(all));
    for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
        struct fault_set f;
        memset(&f, 0, sizeof(f));
        assert_int_equal(fault_parse(one[i], strlen(one[i]), &f, err, sizeof(err)), 0);
        assert_int_equal(fault_parse(one[i], strlen(one[i]), &all, err, sizeof(err)), 0);
        round_trip(&f);
    }
    assert_int_equal(all.kinds, (1u << FAULT__COUNT) - 1);
    round_trip(&all);
    /* What the access log shows. */
    struct fault_set f;
    memset(&f, 0, sizeof(f));
    assert_int_equal(fault_format(&f, text, sizeof(text)), 0);
    assert_string_equal(text, "");
    assert_int_equal(fault_parse("split_20", 8, &f, err, sizeof(err)), 0);
    assert_int_equal(fault_parse("delay_reply_500", 15, &f, err, sizeof(err)), 0);
    assert_int_equal(fault_parse("refused", 7, &f, err, sizeof(err)), 0);
    assert_int_equal(fault_parse("wrong_bnd", 9, &f, err, sizeof(err)), 0);
    assert_int_equal(fault_format(&f, text, sizeof(text)), 45);
    assert_string_equal(text, "reply_0x05,delay_reply_500,split_20,wrong_bnd");
    /* Truncated to cap - 1 bytes, NUL-terminated. */
    assert_int_equal(fault_format(&f, text, 12), 11);
    assert_string_equal(text, "reply_0x05,");
    assert_int_equal(fault_format(&f, text, 1), 0);
    assert_string_equal(text, "");
}

/* name's parameters: 0, its base length and the set's text. */
static void
user_ok(const char *name, size_t base, const char *faults)
{
    struct fault_set f;
    size_t b = 999;
    char err[400] = "", text[1024];
    if (fault_user_params(name, &b, &f, err, sizeof(err)) != 0)
        fail_msg("'%s' refused: %s", name, err);
    assert_int_equal(b, base);
    fault_format(&f, text, sizeof(text));
    assert_string_equal(text, faults);
}

static void
user_bad(const char *name, const char *want)
{
    struct fault_set f;
    size_t b = 999;
    char err[400] = "";
    assert_int_equal(fault_user_params(name, &b, &f, err, sizeof(err)), -EINVAL);
    if (!strstr(err, want))
        fail_msg("'%s': message '%s' lacks '%s'", name, err, want);
}

static void
test_user_params(void **state)
{
    (void)state;
    struct fault_set f;
    size_t base;
    char err[400];
    assert_int_equal(fault_user_params("alice-fault-refused", &base, &f, err, sizeof(err)), 0);
    assert_int_equal(base, 5);
    assert_int_equal(f.kinds, 1u << FAULT_REPLY);
    assert_int_equal(f.arg[FAULT_REPLY], 5);
    /* No keyword: the whole name, no faults. */
    user_ok("alice", 5, "");
    user_ok("alice-session-x", 15, "");
    user_ok("alice-faulty", 12, "");
    user_ok("alice-fault", 11, "");
    /* The session comes first and stays in the base for egress_user_params(). */
    user_ok("alice-session-x-fault-split_10", 15, "split_10");
    user_ok("alice-session-x-ttl-60-fault-refused", 22, "reply_0x05");
    /* Several: each adds, the last of a kind wins. */
    user_ok("bob-fault-delay_reply_300-fault-split_20-fault-rst_down_1000", 3,
            "delay_reply_300,split_20,rst_down_1000");
    user_ok("bob-fault-split_20-fault-split_30", 3, "split_30");
    user_ok("b-fault-no_identd-fault-refused", 1, "reply_0x05,reply_0x5c");
    /* A name that starts with the keyword has no base. */
    user_bad("-fault-refused", "a user name cannot start with \"-fault-\"");
    /* Nothing, or nothing valid, after a keyword. */
    user_bad("alice-fault-", "unknown fault ''");
    user_bad("alice-fault-bogus", "unknown fault 'bogus'");
    user_bad("alice-fault-refused-fault-", "unknown fault ''");
    user_bad("alice-fault--fault-refused", "unknown fault ''");
    user_bad("alice-fault-refused-fault-split", "split needs an argument");
    user_bad("alice-fault-split_0", "split takes a whole number 1-60000");
    user_bad("alice-fault-refused-x", "unknown fault 'refused-x'");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_user_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
