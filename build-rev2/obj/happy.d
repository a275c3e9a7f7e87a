build-rev2/obj/happy.o: src/happy.c include/happy.h include/addr.h
include/happy.h:
include/addr.h:
