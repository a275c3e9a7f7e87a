build-rev2/obj/transparent.o: src/transparent.c include/transparent.h \
 include/addr.h include/socks5.h
include/transparent.h:
include/addr.h:
include/socks5.h:
