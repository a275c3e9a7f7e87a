build-rev2/obj/hostname.o: src/hostname.c include/hostname.h
include/hostname.h:
