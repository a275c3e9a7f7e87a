build-review-san/obj/admin.o: src/admin.c include/admin.h \
 include/hostname.h
include/admin.h:
include/hostname.h:
