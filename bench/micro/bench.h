/*
 * bench.h - the C side of the micro-benchmarks: what a bm_<mod>.c sees of
 * Google benchmark, which only harness.cc (C++) touches.
 *
 * A benchmark is a C function void bm_x(struct bench *b): set up, then
 * loop while (bench_next(b)) { one operation }, then clean up. Only the
 * loop is timed: the timer starts at the first bench_next() and stops at
 * the one that returns false. The function runs several times per process
 * (Google benchmark grows the iteration count until a run lasts long
 * enough), so expensive setup belongs in a static built once. Single
 * thread: the harness registers no threaded runs.
 *
 * Every benchmark function is declared at the end of this file and listed
 * in the table in harness.cc, which gives its name and arguments.
 */
#ifndef RINGSOCKS_BENCH_H
#define RINGSOCKS_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Owned by the harness; the fields are visible only so that bench_next()
 * counts iterations inline, as Google benchmark's own range-for loop does:
 * the harness hands over the whole run as one batch (bench_refill()), so
 * an iteration costs a decrement, not a call into C++. The "bench_loop"
 * figure is that cost with nothing in the body.
 */
struct bench {
    uint64_t left;        /* iterations left in the current batch */
    void *state;          /* benchmark::State */
    int64_t bytes, items; /* per iteration, set by bench_set_bytes()/_items() */
};

/* Harness: start the timed run (first call) or end it (returns false). */
bool bench_refill(struct bench *b);

/* True while there is an iteration to run; false once, at the end. */
static inline bool
bench_next(struct bench *b)
{
    if (__builtin_expect(b->left != 0, 1)) {
        b->left--;
        return true;
    }
    return bench_refill(b);
}

/* The i-th argument of this run (from the harness table). */
int64_t bench_arg(const struct bench *b, int i);

/* Bytes or items one iteration handles: reported as a rate. */
void bench_set_bytes(struct bench *b, int64_t bytes_per_iter);
void bench_set_items(struct bench *b, int64_t items_per_iter);

/* Setup failed (msg is a static string): the run is reported as skipped. Call before the loop. */
void bench_error(struct bench *b, const char *msg);

/* Make the compiler believe *p is read (and memory written) here, as benchmark::DoNotOptimize. */
static inline void
bench_do_not_optimize(const void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

/* bm_loop.c: the harness itself */
void bm_bench_loop(struct bench *b);

/* bm_socks5.c */
void bm_socks5_init(struct bench *b);
void bm_socks5_feed_greeting(struct bench *b);
void bm_socks5_feed_greeting_password(struct bench *b);
void bm_socks5_feed_request_ipv4(struct bench *b);
void bm_socks5_feed_request_ipv6(struct bench *b);
void bm_socks5_feed_request_domain(struct bench *b);
void bm_socks5_reply_ipv4(struct bench *b);
void bm_socks5_reply_ipv6(struct bench *b);
void bm_socks5_udp_parse_ipv4(struct bench *b);
void bm_socks5_udp_parse_domain(struct bench *b);
void bm_socks5_udp_header_ipv4(struct bench *b);
void bm_socks5_udp_header_ipv6(struct bench *b);
void bm_socks5_udp_header_mapped(struct bench *b);

/* bm_socks4.c */
void bm_socks4_feed_4(struct bench *b);
void bm_socks4_feed_4a(struct bench *b);
void bm_socks4_reply(struct bench *b);

/* bm_auth.c */
void bm_auth_feed(struct bench *b);
void bm_auth_feed_max(struct bench *b);

/* bm_users.c */
void bm_users_digest(struct bench *b);
void bm_users_memcmp(struct bench *b);
void bm_users_verify_32(struct bench *b);
void bm_users_fast_path(struct bench *b);

/* bm_addr.c */
void bm_addr_parse_ipv4(struct bench *b);
void bm_addr_parse_ipv6(struct bench *b);

/* bm_hosts.c */
void bm_hosts_lookup_hit(struct bench *b);
void bm_hosts_lookup_miss(struct bench *b);
void bm_hosts_lookup_localhost(struct bench *b);

/* bm_acl.c */
void bm_acl_match_last_rule(struct bench *b);
void bm_acl_match_no_match(struct bench *b);

/* bm_lim.c */
void bm_lim_open(struct bench *b);
void bm_lim_rate(struct bench *b);
void bm_lim_reserve(struct bench *b);
void bm_lim_bytes(struct bench *b);
/* bm_egress.c */
void bm_egress_pick_random(struct bench *b);
void bm_egress_pick_sticky(struct bench *b);
void bm_egress_user_params(struct bench *b);

#ifdef __cplusplus
}
#endif

#endif
