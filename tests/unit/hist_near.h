/*
 * hist_near.h - for unit tests of socksload's histograms: a percentile read from the 3-digit
 * histogram is within 0.1 % of the value wanted. Include after <cmocka.h>.
 */
#ifndef SOCKSLOAD_HIST_NEAR_H
#define SOCKSLOAD_HIST_NEAR_H

#include <stdint.h>

/* got within 0.1 % of want. */
static inline void
near(uint64_t got, double want)
{
    double d = (double)got - want;

    if (d < 0)
        d = -d;
    if (d > want * 0.001) {
        print_error("got %llu, want %.1f (+-0.1 %%)\n", (unsigned long long)got, want);
        fail();
    }
}

#endif
