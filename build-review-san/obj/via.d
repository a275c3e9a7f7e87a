build-review-san/obj/via.o: src/via.c include/via.h include/addr.h \
 tools/socksload/socksload.h
include/via.h:
include/addr.h:
tools/socksload/socksload.h:
