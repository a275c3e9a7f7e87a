/*
 * bm_lim.c - what the limits of lim.h cost a shard: a tunnel's place taken and
 * given back (two atomic adds), a new-tunnel rate take (one CAS), a bandwidth
 * reservation with its clock read, and the bytes counted as a write completes.
 * Uncontended: one thread, as on a shard whose user is not on another.
 */
#include "bench.h"
#include "lim.h"

void
bm_lim_open(struct bench *b)
{
    static struct lim_node n;
    while (bench_next(b)) {
        bool ok = lim_open_take(&n, 1000000);
        bench_do_not_optimize(&ok);
        lim_open_put(&n);
    }
}

void
bm_lim_rate(struct bench *b)
{
    _Atomic uint64_t tat = 0;
    uint64_t now = 1000000000ull;
    while (bench_next(b)) {
        now += 1000; /* 1 us between tunnels, under a rate of 1,000,000/s */
        bool ok = gcra_take(&tat, now, 1000, 1000 * 999, NULL);
        bench_do_not_optimize(&ok);
    }
}

void
bm_lim_reserve(struct bench *b)
{
    _Atomic uint64_t tat = 0;
    while (bench_next(b)) {
        uint64_t r = gcra_reserve(&tat, lim_now_ns(), 100000000000ull, 1000000, 65536);
        bench_do_not_optimize(&r);
    }
}

void
bm_lim_bytes(struct bench *b)
{
    static struct lim_node n;
    while (bench_next(b))
        lim_bytes(&n, 1, 65536);
    bench_do_not_optimize(&n);
}
