build-review-san/obj/hostname.o: src/hostname.c include/hostname.h
include/hostname.h:
