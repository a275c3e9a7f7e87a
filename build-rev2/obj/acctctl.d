build-rev2/obj/acctctl.o: src/acctctl.c include/acctctl.h include/lim.h \
 include/acct.h include/json.h include/metrics.h include/pct.h \
 include/opts.h include/policy.h include/addr.h include/lockout.h \
 include/opts.h include/users.h
include/acctctl.h:
include/lim.h:
include/acct.h:
include/json.h:
include/metrics.h:
include/pct.h:
include/opts.h:
include/policy.h:
include/addr.h:
include/lockout.h:
include/opts.h:
include/users.h:
