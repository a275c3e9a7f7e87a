build-rev2/obj/ctl_upgrade.o: src/ctl_upgrade.c include/ctl.h \
 include/admin.h include/conn_end.h include/metrics.h include/lim.h \
 include/opts.h include/acct.h include/acctctl.h include/admin.h \
 include/fleet.h include/fleet_conf.h include/json.h include/notify.h \
 include/shard.h include/shard_types.h include/clients.h include/addr.h \
 include/conn.h include/egress.h include/relay_types.h include/pipe.h \
 include/udq.h include/ud.h include/handshake_types.h include/auth.h \
 include/httpconnect.h include/socks5.h include/socks4.h include/stats.h \
 include/upgrade.h
include/ctl.h:
include/admin.h:
include/conn_end.h:
include/metrics.h:
include/lim.h:
include/opts.h:
include/acct.h:
include/acctctl.h:
include/admin.h:
include/fleet.h:
include/fleet_conf.h:
include/json.h:
include/notify.h:
include/shard.h:
include/shard_types.h:
include/clients.h:
include/addr.h:
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
include/upgrade.h:
