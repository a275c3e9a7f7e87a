build-review-san/obj/lim.o: src/lim.c include/lim.h
include/lim.h:
