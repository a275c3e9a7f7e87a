build-rev2/obj/shardcmd.o: src/shardcmd.c include/shardcmd.h \
 include/addr.h include/conn_end.h include/acct.h include/lim.h \
 include/conn.h include/egress.h include/clients.h include/relay_types.h \
 include/pipe.h include/udq.h include/ud.h include/httpconnect.h \
 include/auth.h include/socks5.h include/json.h include/log.h \
 include/opts.h include/pct.h include/shard_types.h include/conn.h \
 include/handshake_types.h include/httpconnect.h include/socks4.h \
 include/stats.h include/via.h include/transparent.h
include/shardcmd.h:
include/addr.h:
include/conn_end.h:
include/acct.h:
include/lim.h:
include/conn.h:
include/egress.h:
include/clients.h:
include/relay_types.h:
include/pipe.h:
include/udq.h:
include/ud.h:
include/httpconnect.h:
include/auth.h:
include/socks5.h:
include/json.h:
include/log.h:
include/opts.h:
include/pct.h:
include/shard_types.h:
include/conn.h:
include/handshake_types.h:
include/httpconnect.h:
include/socks4.h:
include/stats.h:
include/via.h:
include/transparent.h:
