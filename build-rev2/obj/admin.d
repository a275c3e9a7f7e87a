build-rev2/obj/admin.o: src/admin.c include/admin.h include/hostname.h
include/admin.h:
include/hostname.h:
