build-rev2/obj/notify.o: src/notify.c include/notify.h
include/notify.h:
