build-review-san/obj/pct.o: src/pct.c include/pct.h
include/pct.h:
