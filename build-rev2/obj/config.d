build-rev2/obj/config.o: src/config.c include/config.h include/acl.h \
 include/addr.h include/opts.h include/addr.h include/addrsets.h \
 include/admin.h include/egress.h include/lim.h include/happy.h \
 include/hostname.h include/options.h include/users.h include/via.h
include/config.h:
include/acl.h:
include/addr.h:
include/opts.h:
include/addr.h:
include/addrsets.h:
include/admin.h:
include/egress.h:
include/lim.h:
include/happy.h:
include/hostname.h:
include/options.h:
include/users.h:
include/via.h:
