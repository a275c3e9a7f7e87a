build-rev2/obj/sock.o: src/sock.c include/sock.h include/addr.h \
 include/hosts.h include/opts.h
include/sock.h:
include/addr.h:
include/hosts.h:
include/opts.h:
