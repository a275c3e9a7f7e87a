build-rev2/obj/bind.o: src/bind.c include/bind.h include/conn.h \
 include/addr.h include/egress.h include/lim.h include/clients.h \
 include/conn_end.h include/relay_types.h include/pipe.h include/udq.h \
 include/ud.h include/handshake.h include/socks5.h include/limit.h \
 include/limit_types.h include/outbound.h include/relay.h \
 include/policy.h include/lockout.h include/opts.h include/shard_types.h \
 include/handshake_types.h include/auth.h include/httpconnect.h \
 include/socks4.h include/stats.h include/sock.h
include/bind.h:
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
include/handshake.h:
include/socks5.h:
include/limit.h:
include/limit_types.h:
include/outbound.h:
include/relay.h:
include/policy.h:
include/lockout.h:
include/opts.h:
include/shard_types.h:
include/handshake_types.h:
include/auth.h:
include/httpconnect.h:
include/socks4.h:
include/stats.h:
include/sock.h:
