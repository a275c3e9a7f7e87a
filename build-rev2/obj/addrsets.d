build-rev2/obj/addrsets.o: src/addrsets.c include/addrsets.h \
 include/acl.h include/addr.h
include/addrsets.h:
include/acl.h:
include/addr.h:
