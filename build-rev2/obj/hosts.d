build-rev2/obj/hosts.o: src/hosts.c include/hosts.h include/addr.h \
 include/hostname.h
include/hosts.h:
include/addr.h:
include/hostname.h:
