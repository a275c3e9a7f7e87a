build-rev2/obj/auth.o: src/auth.c include/auth.h
include/auth.h:
