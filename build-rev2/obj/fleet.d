build-rev2/obj/fleet.o: src/fleet.c include/fleet.h include/fleet_conf.h \
 include/acct.h include/lim.h include/acctctl.h include/lim.h \
 include/policy.h include/addr.h include/lockout.h include/opts.h
include/fleet.h:
include/fleet_conf.h:
include/acct.h:
include/lim.h:
include/acctctl.h:
include/lim.h:
include/policy.h:
include/addr.h:
include/lockout.h:
include/opts.h:
