build-rev2/obj/climap.o: src/climap.c include/climap.h include/addr.h \
 include/lim.h
include/climap.h:
include/addr.h:
include/lim.h:
