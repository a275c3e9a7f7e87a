build-rev2/obj/ctl.o: src/ctl.c include/ctl.h include/admin.h \
 include/conn_end.h include/metrics.h include/lim.h include/opts.h \
 include/acct.h include/acctctl.h include/fleet.h include/fleet_conf.h \
 include/admin.h include/climap.h include/addr.h include/log.h \
 include/notify.h include/options.h include/policy.h include/lockout.h \
 include/shard.h include/shard_types.h include/clients.h include/conn.h \
 include/egress.h include/relay_types.h include/pipe.h include/udq.h \
 include/ud.h include/handshake_types.h include/auth.h \
 include/httpconnect.h include/socks5.h include/socks4.h include/stats.h \
 include/users.h
include/ctl.h:
include/admin.h:
include/conn_end.h:
include/metrics.h:
include/lim.h:
include/opts.h:
include/acct.h:
include/acctctl.h:
include/fleet.h:
include/fleet_conf.h:
include/admin.h:
include/climap.h:
include/addr.h:
include/log.h:
include/notify.h:
include/options.h:
include/policy.h:
include/lockout.h:
include/shard.h:
include/shard_types.h:
include/clients.h:
include/conn.h:
include/egress.h:
include/relay_types.h:
include/pipe.h:
include/udq.h:
include/ud.h:
include/handshake_types.h:
include/auth.h:
include/httpconnect.h:
include/socks5.h:
include/socks4.h:
include/stats.h:
include/users.h:
