build-rev2/obj/authq.o: src/authq.c include/authq.h include/addr.h \
 include/auth.h include/authcache.h include/clients.h include/policy.h \
 include/lim.h include/lockout.h include/opts.h include/conn.h \
 include/egress.h include/clients.h include/conn_end.h \
 include/relay_types.h include/pipe.h include/udq.h include/ud.h \
 include/ring.h include/shard_types.h include/conn.h \
 include/handshake_types.h include/httpconnect.h include/socks5.h \
 include/socks4.h include/stats.h include/users.h
include/authq.h:
include/addr.h:
include/auth.h:
include/authcache.h:
include/clients.h:
include/policy.h:
include/lim.h:
include/lockout.h:
include/opts.h:
include/conn.h:
include/egress.h:
include/clients.h:
include/conn_end.h:
include/relay_types.h:
include/pipe.h:
include/udq.h:
include/ud.h:
include/ring.h:
include/shard_types.h:
include/conn.h:
include/handshake_types.h:
include/httpconnect.h:
include/socks5.h:
include/socks4.h:
include/stats.h:
include/users.h:
