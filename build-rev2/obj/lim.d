build-rev2/obj/lim.o: src/lim.c include/lim.h
include/lim.h:
