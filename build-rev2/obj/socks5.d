build-rev2/obj/socks5.o: src/socks5.c include/socks5.h include/hostname.h
include/socks5.h:
include/hostname.h:
