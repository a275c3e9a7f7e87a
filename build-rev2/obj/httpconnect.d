build-rev2/obj/httpconnect.o: src/httpconnect.c include/httpconnect.h \
 include/auth.h include/socks5.h
include/httpconnect.h:
include/auth.h:
include/socks5.h:
