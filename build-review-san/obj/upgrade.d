build-review-san/obj/upgrade.o: src/upgrade.c include/upgrade.h \
 include/addr.h
include/upgrade.h:
include/addr.h:
