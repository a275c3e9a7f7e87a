build-rev2/obj/shard.o: src/shard.c include/shard.h include/shard_types.h \
 include/clients.h include/addr.h include/conn.h include/egress.h \
 include/lim.h include/conn_end.h include/relay_types.h include/pipe.h \
 include/udq.h include/ud.h include/handshake_types.h include/auth.h \
 include/httpconnect.h include/socks5.h include/socks4.h include/opts.h \
 include/stats.h include/authq.h include/conn.h include/dns.h \
 include/handshake.h include/outbound.h include/policy.h \
 include/lockout.h include/relay.h include/request.h include/ring.h \
 include/shardcmd.h include/udp.h
include/shard.h:
include/shard_types.h:
include/clients.h:
include/addr.h:
include/conn.h:
include/egress.h:
include/lim.h:
include/conn_end.h:
include/relay_types.h:
include/pipe.h:
include/udq.h:
include/ud.h:
include/handshake_types.h:
include/auth.h:
include/httpconnect.h:
include/socks5.h:
include/socks4.h:
include/opts.h:
include/stats.h:
include/authq.h:
include/conn.h:
include/dns.h:
include/handshake.h:
include/outbound.h:
include/policy.h:
include/lockout.h:
include/relay.h:
include/request.h:
include/ring.h:
include/shardcmd.h:
include/udp.h:
