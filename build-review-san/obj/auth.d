build-review-san/obj/auth.o: src/auth.c include/auth.h
include/auth.h:
