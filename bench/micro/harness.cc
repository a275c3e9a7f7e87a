/*
 * harness.cc - the only C++ in ringsocks: binds the C benchmarks of
 * bench/micro/bm_*.c to Google benchmark and runs them.
 *
 * Owns struct bench (bench.h): one per run of a benchmark function, on the
 * stack of the runner thread. Every benchmark is a row of the table below;
 * a function not listed there never runs. Flags are Google benchmark's
 * (--benchmark_filter=REGEX, --benchmark_min_time=S, --benchmark_format=json,
 * --benchmark_repetitions=N, ...).
 */
#include <benchmark/benchmark.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "bench.h"

namespace {

benchmark::State &
state_of(const struct bench *b)
{
    return *static_cast<benchmark::State *>(b->state);
}

/*
 * Iterations are handed to the C loop as one batch of max_iterations:
 * KeepRunningBatch() starts the timer on the first call, and the second
 * call (batch exhausted) stops it and returns false.
 */
bool
refill(struct bench *b)
{
    benchmark::State &st = state_of(b);
    benchmark::IterationCount n = st.max_iterations > 0 ? st.max_iterations : 1;
    if (!st.KeepRunningBatch(n))
        return false;
    b->left = static_cast<uint64_t>(n) - 1;
    return true;
}

struct row {
    const char *name;
    void (*fn)(struct bench *);
    std::vector<int64_t> args; /* one run per value; empty: one run without argument */
};

/* clang-format off */
const row table[] = {
    {"bench_loop",                     bm_bench_loop, {}},

    {"socks5_init",                    bm_socks5_init, {}},
    {"socks5_feed/greeting",           bm_socks5_feed_greeting, {}},
    {"socks5_feed/greeting_password",  bm_socks5_feed_greeting_password, {}},
    {"socks5_feed/request_ipv4",       bm_socks5_feed_request_ipv4, {}},
    {"socks5_feed/request_ipv6",       bm_socks5_feed_request_ipv6, {}},
    {"socks5_feed/request_domain",     bm_socks5_feed_request_domain, {}},
    {"socks5_reply/ipv4",              bm_socks5_reply_ipv4, {}},
    {"socks5_reply/ipv6",              bm_socks5_reply_ipv6, {}},
    {"socks5_udp_parse/ipv4",          bm_socks5_udp_parse_ipv4, {}},
    {"socks5_udp_parse/domain",        bm_socks5_udp_parse_domain, {}},
    {"socks5_udp_header/ipv4",         bm_socks5_udp_header_ipv4, {}},
    {"socks5_udp_header/ipv6",         bm_socks5_udp_header_ipv6, {}},
    {"socks5_udp_header/mapped",       bm_socks5_udp_header_mapped, {}},

    {"socks4_feed/4",                  bm_socks4_feed_4, {}},
    {"socks4_feed/4a",                 bm_socks4_feed_4a, {}},
    {"socks4_reply",                   bm_socks4_reply, {}},

    {"auth_feed",                      bm_auth_feed, {}},
    {"auth_feed/max",                  bm_auth_feed_max, {}},
    {"users/digest",                   bm_users_digest, {}},
    {"users/sodium_memcmp",            bm_users_memcmp, {}},
    {"users/crypto_verify_32",         bm_users_verify_32, {}},
    {"users/fast_path",                bm_users_fast_path, {}},

    {"addr_parse/ipv4",                bm_addr_parse_ipv4, {}},
    {"addr_parse/ipv6",                bm_addr_parse_ipv6, {}},

    /* argument: entries in the hosts table */
    {"hosts_lookup/hit",               bm_hosts_lookup_hit, {10, 1000}},
    {"hosts_lookup/miss",              bm_hosts_lookup_miss, {10, 1000}},
    {"hosts_lookup/localhost",         bm_hosts_lookup_localhost, {}},

    /* argument: rules in the set */
    {"acl_match/last_rule",            bm_acl_match_last_rule, {10, 1000, 10000}},
    {"acl_match/no_match",             bm_acl_match_no_match, {10, 1000, 10000}},

    {"egress/pick_random",             bm_egress_pick_random, {}},
    {"egress/pick_sticky",             bm_egress_pick_sticky, {}},
    {"egress/user_params",             bm_egress_user_params, {}},

    {"lim/open_take_put",              bm_lim_open, {}},
    {"lim/rate_take",                  bm_lim_rate, {}},
    {"lim/bw_reserve",                 bm_lim_reserve, {}},
    {"lim/bytes_counted",              bm_lim_bytes, {}},
};
/* clang-format on */

void
run(benchmark::State &st, void (*fn)(struct bench *))
{
    struct bench b = {};
    b.state = &st;
    fn(&b);
    if (b.bytes > 0)
        st.SetBytesProcessed(b.bytes * st.iterations());
    if (b.items > 0)
        st.SetItemsProcessed(b.items * st.iterations());
}

} // namespace

extern "C" bool
bench_refill(struct bench *b)
{
    return refill(b);
}

extern "C" int64_t
bench_arg(const struct bench *b, int i)
{
    return state_of(b).range(static_cast<std::size_t>(i));
}

extern "C" void
bench_set_bytes(struct bench *b, int64_t bytes_per_iter)
{
    b->bytes = bytes_per_iter;
}

extern "C" void
bench_set_items(struct bench *b, int64_t items_per_iter)
{
    b->items = items_per_iter;
}

extern "C" void
bench_error(struct bench *b, const char *msg)
{
    state_of(b).SkipWithError(msg);
}

int
main(int argc, char **argv)
{
    for (const row &r : table) {
        benchmark::internal::Benchmark *bm =
            benchmark::RegisterBenchmark(r.name, run, r.fn)->Unit(benchmark::kNanosecond);
        for (int64_t a : r.args)
            bm->Arg(a);
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 2;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
