/*
 * bm_hosts.c - name lookups in the hosts table (src/hosts.c) that the
 * proxy answers before DNS: a name in the table, a name not in it (every
 * request by name that goes on to DNS pays this), and "localhost", which
 * never reaches the table. The argument is the number of entries; the
 * table is written to a temporary hosts(5) file and loaded once per size.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bench.h"
#include "hosts.h"

#define SIZES 4

static const struct hosts *
table(struct bench *b, unsigned n)
{
    static struct {
        unsigned n;
        struct hosts *h;
    } made[SIZES];
    for (unsigned i = 0; i < SIZES; i++)
        if (made[i].h && made[i].n == n)
            return made[i].h;

    char path[] = "/tmp/bm_hosts.XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd == -1 ? NULL : fdopen(fd, "w");
    if (!f) {
        if (fd != -1)
            close(fd);
        bench_error(b, "cannot write a hosts file");
        return NULL;
    }
    /* Half IPv4, half IPv6, one name and one alias per line, as /etc/hosts is written. */
    for (unsigned i = 0; i < n; i++) {
        if (i % 2)
            fprintf(f, "10.%u.%u.%u host-%05u.example.lan h%05u\n", i >> 16 & 255, i >> 8 & 255,
                    i & 255, i, i);
        else
            fprintf(f, "fd00::%x host-%05u.example.lan h%05u\n", i, i, i);
    }
    fclose(f);
    struct hosts *h = hosts_load(path);
    unlink(path);
    if (!h) {
        bench_error(b, "hosts_load failed");
        return NULL;
    }
    for (unsigned i = 0; i < SIZES; i++)
        if (!made[i].h) {
            made[i].n = n;
            made[i].h = h;
            break;
        }
    return h;
}

static void
lookup(struct bench *b, const struct hosts *h, const char *name, unsigned expect)
{
    union sockaddr_inx out[8];
    /* max 8 as session.c asks (HS_MAX_ADDRS) */
    if (hosts_lookup(h, name, 443, out, 8) != expect) {
        bench_error(b, "unexpected lookup result");
        return;
    }
    while (bench_next(b)) {
        unsigned r = hosts_lookup(h, name, 443, out, 8);
        bench_do_not_optimize(&r);
        bench_do_not_optimize(out);
    }
}

void
bm_hosts_lookup_hit(struct bench *b)
{
    unsigned n = (unsigned)bench_arg(b, 0);
    const struct hosts *h = table(b, n);
    char name[64];
    if (!h)
        return;
    snprintf(name, sizeof(name), "host-%05u.example.lan", n / 2);
    lookup(b, h, name, 1);
}

void
bm_hosts_lookup_miss(struct bench *b)
{
    const struct hosts *h = table(b, (unsigned)bench_arg(b, 0));
    if (h)
        lookup(b, h, "www.example.com", 0);
}

void
bm_hosts_lookup_localhost(struct bench *b)
{
    lookup(b, NULL, "localhost", 2);
}
