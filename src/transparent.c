/*
 * transparent.c - transparent listeners (transparent.h): IP_TRANSPARENT, the
 * original destination of a redirected connection, and that destination as a
 * request.
 *
 * Called on the main thread (listeners, before the privilege drop) and on shard
 * threads (one getsockopt, or one getsockname, per accepted connection: no
 * blocking). It never touches a connection, a policy or a ring.
 */
#include "transparent.h"

#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int
transparent_set(int fd, int family, bool on)
{
    int v = on;
    int ret = family == AF_INET6 ? setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &v, sizeof(v))
                                 : setsockopt(fd, SOL_IP, IP_TRANSPARENT, &v, sizeof(v));
    return ret == -1 ? -errno : 0;
}

bool
transparent_is_set(int fd, int family)
{
    int v = 0;
    socklen_t len = sizeof(v);
    int ret = family == AF_INET6 ? getsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &v, &len)
                                 : getsockopt(fd, SOL_IP, IP_TRANSPARENT, &v, &len);
    return ret == 0 && v;
}

int
transparent_orig_dest(int fd, union sockaddr_inx *dst, bool *natted)
{
    socklen_t len = sizeof(*dst);
    memset(dst, 0, sizeof(*dst));
    if (natted)
        *natted = false;
    if (getsockname(fd, &dst->sa, &len) == -1)
        return -errno;
    /*
     * Conntrack's original tuple for the connection (net/netfilter/nf_conntrack_proto.c,
     * getorigdst() and ipv6_getorigdst()): its destination is the one the client asked
     * for, whether NAT rewrote it (redirect) or not (tproxy, or a ruleset that only tracks
     * connections: then it equals the socket's own address). ENOENT when conntrack has no
     * entry (tproxy without conntrack rules: the socket's own address is the destination);
     * ENOPROTOOPT where conntrack is not in the kernel.
     */
    union sockaddr_inx orig;
    memset(&orig, 0, sizeof(orig));
    len = sizeof(orig);
    int ret = dst->sa.sa_family == AF_INET6
                  ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &orig, &len)
                  : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &orig, &len);
    if (ret == 0) {
        union sockaddr_inx own = *dst;
        addr_unmap(&own);
        addr_unmap(&orig);
        if (natted)
            *natted = orig.sa.sa_family != own.sa.sa_family || !addr_same_ip(&orig, &own) ||
                      addr_port(&orig) != addr_port(&own);
        *dst = orig;
    } else if (errno != ENOENT && errno != ENOPROTOOPT) {
        return -errno;
    }
    addr_unmap(dst);
    return 0;
}

int
transparent_request(struct socks_dest *d, const union sockaddr_inx *dst)
{
    union sockaddr_inx a = *dst;
    addr_unmap(&a);
    if (a.sa.sa_family == AF_INET) {
        d->atyp = SOCKS5_ATYP_IPV4;
        d->u.v4 = a.v4.sin_addr;
    } else if (a.sa.sa_family == AF_INET6) {
        d->atyp = SOCKS5_ATYP_IPV6;
        d->u.v6 = a.v6.sin6_addr;
    } else {
        return -EAFNOSUPPORT;
    }
    d->name_len = 0;
    d->port = addr_port(&a);
    return 0;
}
