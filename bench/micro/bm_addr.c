/*
 * bm_addr.c - numeric address parsing (src/addr.c), as the config and the
 * command line use it.
 */
#include <sys/socket.h>

#include "addr.h"
#include "bench.h"

static void
parse(struct bench *b, const char *s)
{
    struct sockaddr_storage ss;
    if (addr_parse(s, -1, &ss) != 0) {
        bench_error(b, "address not accepted");
        return;
    }
    while (bench_next(b)) {
        int r = addr_parse(s, -1, &ss);
        bench_do_not_optimize(&r);
        bench_do_not_optimize(&ss);
    }
}

void
bm_addr_parse_ipv4(struct bench *b)
{
    parse(b, "192.0.2.7:1080");
}

void
bm_addr_parse_ipv6(struct bench *b)
{
    parse(b, "[2001:db8::7]:1080");
}
