build-rev2/obj/pct.o: src/pct.c include/pct.h
include/pct.h:
