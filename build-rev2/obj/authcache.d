build-rev2/obj/authcache.o: src/authcache.c include/authcache.h \
 include/auth.h
include/authcache.h:
include/auth.h:
