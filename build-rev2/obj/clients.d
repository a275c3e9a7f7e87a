build-rev2/obj/clients.o: src/clients.c include/clients.h include/addr.h
include/clients.h:
include/addr.h:
