/*
 * bm_acl.c - cost of acl_match() against the size of the rule set.
 *
 * Builds sets of 10, 1,000 and 10,000 rules shaped like an egress block
 * list (deny rules of one destination CIDR, mostly IPv4, or one host
 * suffix, then one allow rule at the end) and times two queries that both
 * have to look at every rule: one matched by the last rule, one matched by
 * none. Prints the median ns per acl_match() over several repetitions.
 *
 * Standalone until the Google benchmark harness exists (bench/micro/
 * harness.cc): the timed body already loops on bench_next(), so it moves
 * there as is. Usage: bm_acl [repetitions [ms per repetition]].
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acl.h"

struct bench {
    uint64_t i, n;
};

static bool
bench_next(struct bench *b)
{
    return b->i++ < b->n;
}

/* The timed body: one acl_match() per iteration. */
static volatile int sink;

static void
bm_acl_match(struct bench *b, const struct acl *acl, const struct acl_query *q)
{
    int rule, sum = 0;
    while (bench_next(b)) {
        sum += (int)acl_match(acl, q, &rule);
        sum += rule;
    }
    sink = sum;
}

/*
 * The thread's CPU time, not the wall clock: on a shared machine a
 * preempted repetition would otherwise count the other tenant's time.
 */
static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng = 0x2545f4914f6cdd1du;

static uint32_t
rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* The destination of both queries: no deny rule may cover it. */
#define DEST_V4 0x5db8d822u /* 93.184.216.34 */

static void
add_or_die(int r)
{
    if (r < 0) {
        fprintf(stderr, "bm_acl: acl_add: %s\n", strerror(-r));
        exit(1);
    }
}

/*
 * n rules: 60 % deny an IPv4 network (/8 to /28), 10 % an IPv6 one, 30 % a
 * host suffix; the last allows clients in 192.168.0.0/16 to connect to
 * ports 80 and 443.
 */
static struct acl *
build(size_t n)
{
    struct acl *acl = acl_new();
    if (!acl)
        exit(1);
    for (size_t i = 0; i + 1 < n; i++) {
        struct acl_cidr c = {0};
        uint32_t kind = rnd(10);
        if (kind < 6) {
            unsigned prefix = 8 + rnd(21);
            uint32_t mask = ~0u << (32 - prefix), net;
            do
                net = ((uint32_t)rnd(1u << 16) << 16 | rnd(1u << 16)) & mask;
            while ((DEST_V4 & mask) == net);
            c.family = AF_INET;
            c.prefix = (uint8_t)prefix;
            net = htonl(net);
            memcpy(c.addr, &net, 4);
            add_or_die(acl_add(acl, ACL_DENY, NULL, 0, &c, 1, NULL, 0, NULL, 0, 0, NULL, 0));
        } else if (kind < 7) {
            /* 2001:db8:xxxx:xxxx::/64 */
            c.family = AF_INET6;
            c.prefix = 64;
            c.addr[0] = 0x20, c.addr[1] = 0x01, c.addr[2] = 0x0d, c.addr[3] = 0xb8;
            for (int k = 4; k < 8; k++)
                c.addr[k] = (uint8_t)rnd(256);
            add_or_die(acl_add(acl, ACL_DENY, NULL, 0, &c, 1, NULL, 0, NULL, 0, 0, NULL, 0));
        } else {
            static const char *const tld[] = {"com", "net", "org", "io", "ru", "cn"};
            char name[40];
            size_t len = 1;
            name[0] = '.';
            for (uint32_t k = 0, l = 4 + rnd(12); k < l; k++)
                name[len++] = (char)('a' + rnd(26));
            snprintf(name + len, sizeof(name) - len, ".%s", tld[rnd(6)]);
            const char *hosts[1] = {name};
            add_or_die(acl_add(acl, ACL_DENY, NULL, 0, NULL, 0, hosts, 1, NULL, 0, 0, NULL, 0));
        }
    }
    struct acl_cidr lan;
    static const struct acl_ports web[] = {{80, 80}, {443, 443}};
    acl_cidr_parse("192.168.0.0/16", &lan);
    add_or_die(
        acl_add(acl, ACL_ALLOW, &lan, 1, NULL, 0, NULL, 0, web, 2, ACL_CMD_CONNECT, NULL, 0));
    return acl;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Median ns per match over reps repetitions of about ms milliseconds each. */
static double
measure(const struct acl *acl, const struct acl_query *q, int reps, unsigned ms)
{
    uint64_t iters = 1, t;
    /* Calibrate: double the iterations until one run takes a tenth of the target. */
    for (;;) {
        struct bench b = {.n = iters};
        t = now_ns();
        bm_acl_match(&b, acl, q);
        t = now_ns() - t;
        if (t >= (uint64_t)ms * 100000u)
            break;
        iters *= 2;
    }
    iters = iters * ((uint64_t)ms * 1000000u) / (t ? t : 1) + 1;

    uint64_t per[64];
    double ns[64];
    if (reps > 64)
        reps = 64;
    for (int r = 0; r < reps; r++) {
        struct bench b = {.n = iters};
        t = now_ns();
        bm_acl_match(&b, acl, q);
        /* Kept in picoseconds so the median sorts integers. */
        per[r] = (now_ns() - t) * 1000u / iters;
    }
    qsort(per, (size_t)reps, sizeof(per[0]), cmp_u64);
    for (int r = 0; r < reps; r++)
        ns[r] = (double)per[r] / 1000.0;
    return reps % 2 ? ns[reps / 2] : (ns[reps / 2 - 1] + ns[reps / 2]) / 2;
}

static union sockaddr_inx
v4(const char *ip, uint16_t port)
{
    union sockaddr_inx a;
    memset(&a, 0, sizeof(a));
    a.v4.sin_family = AF_INET;
    a.v4.sin_port = htons(port);
    inet_pton(AF_INET, ip, &a.v4.sin_addr);
    return a;
}

int
main(int argc, char **argv)
{
    static const size_t sizes[] = {10, 1000, 10000};
    int reps = argc > 1 ? atoi(argv[1]) : 9;
    unsigned ms = argc > 2 ? (unsigned)atoi(argv[2]) : 50;
    if (reps < 1 || reps > 64 || ms < 1) {
        fprintf(stderr, "usage: bm_acl [repetitions (1..64) [ms per repetition]]\n");
        return 2;
    }

    union sockaddr_inx lan_client = v4("192.168.1.10", 50000),
                       wan_client = v4("203.0.113.5", 50000);
    union sockaddr_inx dest = v4("93.184.216.34", 443);
    struct acl_query last = {.client = &lan_client,
                             .cmd = ACL_CMD_CONNECT,
                             .host = "www.shop.example.org",
                             .dest = &dest,
                             .port = 443};
    struct acl_query none = last;
    none.client = &wan_client;

    printf("acl_match: ns per call (thread CPU time), median of %d x %u ms\n", reps, ms);
    printf("%8s %12s %12s\n", "rules", "last-rule", "no-match");
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct acl *acl = build(sizes[i]);
        int rule;
        /* Both queries must walk the whole set, or the figures mean something else. */
        if (acl_match(acl, &last, &rule) != ACL_ALLOW || rule != (int)sizes[i] - 1 ||
            acl_match(acl, &none, &rule) != ACL_DENY || rule != -1) {
            fprintf(stderr, "bm_acl: %zu rules: a query matched the wrong rule\n", sizes[i]);
            return 1;
        }
        double a = measure(acl, &last, reps, ms), b = measure(acl, &none, reps, ms);
        printf("%8zu %12.1f %12.1f\n", sizes[i], a, b);
        acl_free(acl);
    }
    return 0;
}
