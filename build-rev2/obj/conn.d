build-rev2/obj/conn.o: src/conn.c include/conn.h include/addr.h \
 include/egress.h include/lim.h include/clients.h include/conn_end.h \
 include/relay_types.h include/pipe.h include/udq.h include/ud.h \
 include/acl.h include/acct.h include/limit_types.h include/log.h \
 include/opts.h include/policy.h include/lockout.h include/ring.h \
 include/shard_types.h include/conn.h include/handshake_types.h \
 include/auth.h include/httpconnect.h include/socks5.h include/socks4.h \
 include/stats.h include/users.h include/via.h
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
include/limit_types.h:
include/log.h:
include/opts.h:
include/policy.h:
include/lockout.h:
include/ring.h:
include/shard_types.h:
include/conn.h:
include/handshake_types.h:
include/auth.h:
include/httpconnect.h:
include/socks5.h:
include/socks4.h:
include/stats.h:
include/users.h:
include/via.h:
