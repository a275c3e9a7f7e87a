build-rev2/obj/handshake.o: src/handshake.c include/handshake.h \
 include/conn.h include/addr.h include/egress.h include/lim.h \
 include/clients.h include/conn_end.h include/relay_types.h \
 include/pipe.h include/udq.h include/ud.h include/socks5.h \
 include/authq.h include/auth.h include/clients.h include/egress.h \
 include/httpconnect.h include/lockout.h include/outbound.h \
 include/policy.h include/lockout.h include/opts.h include/proxyproto.h \
 include/shard_types.h include/handshake_types.h include/httpconnect.h \
 include/socks4.h include/stats.h include/socks4.h include/transparent.h
include/handshake.h:
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
include/socks5.h:
include/authq.h:
include/auth.h:
include/clients.h:
include/egress.h:
include/httpconnect.h:
include/lockout.h:
include/outbound.h:
include/policy.h:
include/lockout.h:
include/opts.h:
include/proxyproto.h:
include/shard_types.h:
include/handshake_types.h:
include/httpconnect.h:
include/socks4.h:
include/stats.h:
include/socks4.h:
include/transparent.h:
