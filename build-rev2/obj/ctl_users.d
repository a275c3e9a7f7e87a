build-rev2/obj/ctl_users.o: src/ctl_users.c include/acct.h include/lim.h \
 include/acctctl.h include/pct.h include/ctl.h include/admin.h \
 include/conn_end.h include/metrics.h include/opts.h include/policy.h \
 include/addr.h include/lockout.h include/users.h
include/acct.h:
include/lim.h:
include/acctctl.h:
include/pct.h:
include/ctl.h:
include/admin.h:
include/conn_end.h:
include/metrics.h:
include/opts.h:
include/policy.h:
include/addr.h:
include/lockout.h:
include/users.h:
