build-rev2/obj/udp.o: src/udp.c include/udp.h include/conn.h \
 include/addr.h include/egress.h include/lim.h include/clients.h \
 include/conn_end.h include/relay_types.h include/pipe.h include/udq.h \
 include/ud.h include/acl.h include/acct.h include/conn.h include/limit.h \
 include/limit_types.h include/dns.h include/handshake.h include/socks5.h \
 include/hosts.h include/log.h include/opts.h include/outbound.h \
 include/policy.h include/lockout.h include/shard_types.h \
 include/handshake_types.h include/auth.h include/httpconnect.h \
 include/socks4.h include/stats.h include/sock.h
include/udp.h:
include/conn.h:
include/addr.h:
include/egress.h:
include/lim.h:
include/clients.h:
include/conn_end.h:
include/relay_types.h:
include/pipe.h:
include/udq.h:
include/ud.h:
include/acl.h:
include/acct.h:
include/conn.h:
include/limit.h:
include/limit_types.h:
include/dns.h:
include/handshake.h:
include/socks5.h:
include/hosts.h:
include/log.h:
include/opts.h:
include/outbound.h:
include/policy.h:
include/lockout.h:
include/shard_types.h:
include/handshake_types.h:
include/auth.h:
include/httpconnect.h:
include/socks4.h:
include/stats.h:
include/sock.h:
