build-rev2/obj/proxyproto.o: src/proxyproto.c include/proxyproto.h \
 include/addr.h
include/proxyproto.h:
include/addr.h:
