build-rev2/obj/relay.o: src/relay.c include/relay.h include/conn.h \
 include/addr.h include/egress.h include/lim.h include/clients.h \
 include/conn_end.h include/relay_types.h include/pipe.h include/udq.h \
 include/ud.h include/acct.h include/conn.h include/limit.h \
 include/limit_types.h include/pipe.h include/policy.h include/lockout.h \
 include/opts.h include/shard_types.h include/handshake_types.h \
 include/auth.h include/httpconnect.h include/socks5.h include/socks4.h \
 include/stats.h
include/relay.h:
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
include/acct.h:
include/conn.h:
include/limit.h:
include/limit_types.h:
include/pipe.h:
include/policy.h:
include/lockout.h:
include/opts.h:
include/shard_types.h:
include/handshake_types.h:
include/auth.h:
include/httpconnect.h:
include/socks5.h:
include/socks4.h:
include/stats.h:
