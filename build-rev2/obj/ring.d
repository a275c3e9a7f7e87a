build-rev2/obj/ring.o: src/ring.c include/ring.h
include/ring.h:
