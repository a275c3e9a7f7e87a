/*
 * sock.c - small socket helpers shared by the listeners, CONNECT, BIND and
 * UDP ASSOCIATE. Non-blocking syscalls only; called on shard threads (and
 * on the main thread for listeners).
 */
#include "sock.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hosts.h"
#include "opts.h"

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

void
sock_set_tcp_liveness(int fd, unsigned idle_s, unsigned interval_s, unsigned count,
                      unsigned user_timeout_s)
{
    if (idle_s) {
        int on = 1, idle = (int)idle_s, intvl = (int)interval_s, cnt = (int)count;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    }
    if (user_timeout_s) {
        /* Data unacknowledged this long (also a zero window not reopening) ends the socket:
         * a black-holed peer is noticed in seconds, not after the ~15 minutes of the
         * kernel's retransmission limit, even while the other side keeps sending. */
        unsigned ms = user_timeout_s * 1000u;
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
    }
}

void
sock_set_liveness(int fd, const struct opts *o)
{
    sock_set_tcp_liveness(fd, o->keepalive_idle_s, o->keepalive_interval_s, o->keepalive_count,
                          o->user_timeout_s);
}

/* The bind() test: wrong where ip_nonlocal_bind (or IPV6 freebind) lets any address bind. */
static bool
bind_is_local(const union sockaddr_inx *addr)
{
    union sockaddr_inx a = *addr;
    int fd = socket(a.sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return false;
    hosts_set_port(&a, 0);
    bool local = bind(fd, &a.sa, addr_len(&a.sa)) == 0;
    close(fd);
    return local;
}

bool
sock_addr_is_local(const union sockaddr_inx *addr)
{
    int fam = addr->sa.sa_family;
    if (fam != AF_INET && fam != AF_INET6)
        return false;
    size_t iplen = fam == AF_INET ? 4 : 16;
    struct {
        struct nlmsghdr nh;
        struct rtmsg rt;
        char attrs[RTA_SPACE(16)];
    } req;
    memset(&req, 0, sizeof(req));
    req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(req.rt)) + RTA_LENGTH(iplen);
    req.nh.nlmsg_type = RTM_GETROUTE;
    req.nh.nlmsg_flags = NLM_F_REQUEST;
    req.rt.rtm_family = (unsigned char)fam;
    req.rt.rtm_dst_len = (unsigned char)(iplen * 8);
    struct rtattr *rta = (struct rtattr *)req.attrs;
    rta->rta_type = RTA_DST;
    rta->rta_len = RTA_LENGTH(iplen);
    memcpy(RTA_DATA(rta),
           fam == AF_INET ? (const void *)&addr->v4.sin_addr : (const void *)&addr->v6.sin6_addr,
           iplen);
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd == -1)
        return bind_is_local(addr);
    /* The kernel answers within send(): the recv() finds the answer queued. */
    union {
        struct nlmsghdr nh;
        char buf[1024];
    } ans;
    ssize_t n = -1;
    if (send(fd, &req, req.nh.nlmsg_len, 0) == (ssize_t)req.nh.nlmsg_len)
        n = recv(fd, &ans, sizeof(ans), MSG_DONTWAIT);
    close(fd);
    if (n < 0)
        return bind_is_local(addr);
    if (!NLMSG_OK(&ans.nh, (size_t)n) || ans.nh.nlmsg_type != RTM_NEWROUTE)
        return false; /* an error: no route at all, so nothing local either */
    const struct rtmsg *rt = NLMSG_DATA(&ans.nh);
    return rt->rtm_type == RTN_LOCAL;
}
