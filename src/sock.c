/*
 * sock.c - small socket helpers shared by BIND and UDP ASSOCIATE.
 * Non-blocking syscalls only; called on shard threads.
 */
#include "sock.h"

#include <errno.h>
#include <sodium.h>
#include <sys/socket.h>

#include "hosts.h"

int
sock_bind_range(int fd, union sockaddr_inx *local, uint16_t lo, uint16_t hi)
{
    if (lo == 0) {
        hosts_set_port(local, 0);
        return bind(fd, &local->sa, addr_len(&local->sa)) == -1 ? -errno : 0;
    }
    unsigned span = (unsigned)hi - lo + 1;
    unsigned start = randombytes_uniform(span);
    int err = -EADDRINUSE;
    for (unsigned i = 0; i < span; i++) {
        hosts_set_port(local, (uint16_t)(lo + (start + i) % span));
        if (bind(fd, &local->sa, addr_len(&local->sa)) == 0)
            return 0;
        err = -errno;
        if (errno != EADDRINUSE)
            break;
    }
    return err;
}
