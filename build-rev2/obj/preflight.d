build-rev2/obj/preflight.o: src/preflight.c include/preflight.h \
 include/opts.h include/config.h include/acl.h include/addr.h \
 include/options.h
include/preflight.h:
include/opts.h:
include/config.h:
include/acl.h:
include/addr.h:
include/options.h:
