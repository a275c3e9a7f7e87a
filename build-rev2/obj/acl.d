build-rev2/obj/acl.o: src/acl.c include/acl.h include/addr.h \
 include/hostname.h
include/acl.h:
include/addr.h:
include/hostname.h:
