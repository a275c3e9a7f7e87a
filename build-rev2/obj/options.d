build-rev2/obj/options.o: src/options.c include/options.h include/opts.h \
 include/addr.h include/admin.h include/egress.h include/addr.h \
 include/lim.h include/fleet_conf.h include/lim.h include/lockout.h
include/options.h:
include/opts.h:
include/addr.h:
include/admin.h:
include/egress.h:
include/addr.h:
include/lim.h:
include/fleet_conf.h:
include/lim.h:
include/lockout.h:
