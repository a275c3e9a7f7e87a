build-rev2/obj/pipe.o: src/pipe.c include/pipe.h
include/pipe.h:
