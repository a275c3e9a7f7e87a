build-rev2/obj/lockout.o: src/lockout.c include/lockout.h include/addr.h
include/lockout.h:
include/addr.h:
