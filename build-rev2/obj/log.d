build-rev2/obj/log.o: src/log.c include/log.h include/addr.h \
 include/opts.h include/conn_end.h include/httpconnect.h include/auth.h \
 include/socks5.h include/socks5.h include/transparent.h
include/log.h:
include/addr.h:
include/opts.h:
include/conn_end.h:
include/httpconnect.h:
include/auth.h:
include/socks5.h:
include/socks5.h:
include/transparent.h:
