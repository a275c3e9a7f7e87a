build-rev2/obj/socks4.o: src/socks4.c include/socks4.h include/socks5.h
include/socks4.h:
include/socks5.h:
