build-rev2/obj/dns.o: src/dns.c include/dns.h include/hostname.h \
 include/hosts.h include/addr.h include/conn.h include/egress.h \
 include/lim.h include/clients.h include/conn_end.h include/relay_types.h \
 include/pipe.h include/udq.h include/ud.h include/handshake_types.h \
 include/auth.h include/httpconnect.h include/socks5.h include/socks4.h \
 include/ring.h include/shard_types.h include/conn.h \
 include/handshake_types.h include/opts.h include/stats.h
include/dns.h:
include/hostname.h:
include/hosts.h:
include/addr.h:
include/conn.h:
include/egress.h:
include/lim.h:
include/clients.h:
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
include/ring.h:
include/shard_types.h:
include/conn.h:
include/handshake_types.h:
include/opts.h:
include/stats.h:
