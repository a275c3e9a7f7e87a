build-rev2/obj/chain.o: src/chain.c include/chain.h include/addr.h \
 include/acl.h include/egress.h include/lim.h include/handshake.h \
 include/conn.h include/egress.h include/clients.h include/conn_end.h \
 include/relay_types.h include/pipe.h include/udq.h include/ud.h \
 include/socks5.h include/outbound.h include/policy.h include/lockout.h \
 include/opts.h include/relay.h include/shard_types.h \
 include/handshake_types.h include/auth.h include/httpconnect.h \
 include/socks4.h include/stats.h include/socks5.h include/via.h
include/chain.h:
include/addr.h:
include/acl.h:
include/egress.h:
include/lim.h:
include/handshake.h:
include/conn.h:
include/egress.h:
include/clients.h:
include/conn_end.h:
include/relay_types.h:
include/pipe.h:
include/udq.h:
include/ud.h:
include/socks5.h:
include/outbound.h:
include/policy.h:
include/lockout.h:
include/opts.h:
include/relay.h:
include/shard_types.h:
include/handshake_types.h:
include/auth.h:
include/httpconnect.h:
include/socks4.h:
include/stats.h:
include/socks5.h:
include/via.h:
