build-rev2/obj/limit_bw.o: src/limit_bw.c include/limit.h include/conn.h \
 include/addr.h include/egress.h include/lim.h include/clients.h \
 include/conn_end.h include/relay_types.h include/pipe.h include/udq.h \
 include/ud.h include/limit_types.h include/acct.h include/shard_types.h \
 include/handshake_types.h include/auth.h include/httpconnect.h \
 include/socks5.h include/socks4.h include/opts.h include/stats.h
include/limit.h:
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
include/limit_types.h:
include/acct.h:
include/shard_types.h:
include/handshake_types.h:
include/auth.h:
include/httpconnect.h:
include/socks5.h:
include/socks4.h:
include/opts.h:
include/stats.h:
