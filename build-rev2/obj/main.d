build-rev2/obj/main.o: src/main.c include/addr.h include/dns.h \
 include/hosts.h include/addr.h include/opts.h include/shard.h \
 include/shard_types.h include/clients.h include/conn.h include/egress.h \
 include/lim.h include/conn_end.h include/relay_types.h include/pipe.h \
 include/udq.h include/ud.h include/handshake_types.h include/auth.h \
 include/httpconnect.h include/socks5.h include/socks4.h include/opts.h \
 include/stats.h include/sock.h include/users.h include/transparent.h \
 include/version.h include/acl.h include/admin.h include/config.h \
 include/acl.h include/acct.h include/climap.h include/fleet.h \
 include/fleet_conf.h include/acctctl.h include/ctl.h include/admin.h \
 include/metrics.h include/lockout.h include/log.h include/notify.h \
 include/options.h include/policy.h include/lockout.h include/preflight.h \
 include/upgrade.h
include/addr.h:
include/dns.h:
include/hosts.h:
include/addr.h:
include/opts.h:
include/shard.h:
include/shard_types.h:
include/clients.h:
include/conn.h:
include/egress.h:
include/lim.h:
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
include/opts.h:
include/stats.h:
include/sock.h:
include/users.h:
include/transparent.h:
include/version.h:
include/acl.h:
include/admin.h:
include/config.h:
include/acl.h:
include/acct.h:
include/climap.h:
include/fleet.h:
include/fleet_conf.h:
include/acctctl.h:
include/ctl.h:
include/admin.h:
include/metrics.h:
include/lockout.h:
include/log.h:
include/notify.h:
include/options.h:
include/policy.h:
include/lockout.h:
include/preflight.h:
include/upgrade.h:
