build-review-san/obj/notify.o: src/notify.c include/notify.h
include/notify.h:
