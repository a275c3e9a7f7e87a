build-rev2/obj/egress.o: src/egress.c include/egress.h include/addr.h \
 include/lim.h include/acl.h include/opts.h include/sock.h include/via.h
include/egress.h:
include/addr.h:
include/lim.h:
include/acl.h:
include/opts.h:
include/sock.h:
include/via.h:
