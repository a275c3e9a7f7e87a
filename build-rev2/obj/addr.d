build-rev2/obj/addr.o: src/addr.c include/addr.h
include/addr.h:
