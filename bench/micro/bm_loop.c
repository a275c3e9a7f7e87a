/*
 * bm_loop.c - the harness's own cost: an empty while (bench_next(b)) loop.
 * Every other figure includes it once per iteration.
 */
#include "bench.h"

void
bm_bench_loop(struct bench *b)
{
    while (bench_next(b))
        bench_do_not_optimize(b);
}
