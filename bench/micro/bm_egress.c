/*
 * bm_egress.c - the cost of choosing a tunnel's source address (egress.h):
 * a random pick inside a /64, and the sticky choice of a session (keyed hash
 * of user, session, TTL bucket, then the pick).
 */
#include <sys/socket.h>

#include "bench.h"
#include "egress.h"

static struct egress_pool *
pool(void)
{
    char why[160];
    return egress_pool_parse_csv("2001:db8:1::/64,2001:db8:2::/64,203.0.113.0/24", why,
                                 sizeof(why));
}

void
bm_egress_pick_random(struct bench *b)
{
    struct egress_pool *p = pool();
    uint64_t r[2] = {0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL};
    union sockaddr_inx a;
    while (bench_next(b)) {
        r[0] += 0x9e3779b97f4a7c15ULL; /* new bits per pick, as the shard's generator gives */
        egress_pick(p, AF_INET6, r, &a);
        bench_do_not_optimize(&a);
    }
    egress_pool_free(p);
}

void
bm_egress_pick_sticky(struct bench *b)
{
    struct egress_pool *p = pool();
    uint8_t key[16];
    egress_session_key("fleet secret", key);
    struct egress_session s = {"a1b2c3d4", 8, 600};
    union sockaddr_inx a;
    uint64_t wall = 1796000000, bits[2];
    while (bench_next(b)) {
        egress_session_bits(key, "alice", 5, &s, 600, wall++, AF_INET6, bits);
        egress_pick(p, AF_INET6, bits, &a);
        bench_do_not_optimize(&a);
    }
    egress_pool_free(p);
}

void
bm_egress_user_params(struct bench *b)
{
    size_t base;
    struct egress_session s;
    while (bench_next(b)) {
        int r = egress_user_params("alice-session-a1b2c3d4-ttl-600", &base, &s);
        bench_do_not_optimize(&r);
        bench_do_not_optimize(&s);
    }
}
