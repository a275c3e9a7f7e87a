build-rev2/obj/outbound.o: src/outbound.c include/outbound.h \
 include/addr.h include/acl.h include/conn.h include/egress.h \
 include/lim.h include/clients.h include/conn_end.h include/relay_types.h \
 include/pipe.h include/udq.h include/ud.h include/egress.h \
 include/policy.h include/lockout.h include/opts.h include/shard_types.h \
 include/conn.h include/handshake_types.h include/auth.h \
 include/httpconnect.h include/socks5.h include/socks4.h include/stats.h \
 include/transparent.h include/users.h
include/outbound.h:
include/addr.h:
include/acl.h:
include/conn.h:
include/egress.h:
include/lim.h:
include/clients.h:
include/conn_end.h:
include/relay_types.h:
include/pipe.h:
include/udq.h:
include/ud.h:
include/egress.h:
include/policy.h:
include/lockout.h:
include/opts.h:
include/shard_types.h:
include/conn.h:
include/handshake_types.h:
include/auth.h:
include/httpconnect.h:
include/socks5.h:
include/socks4.h:
include/stats.h:
include/transparent.h:
include/users.h:
