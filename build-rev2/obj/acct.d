build-rev2/obj/acct.o: src/acct.c include/acct.h include/lim.h
include/acct.h:
include/lim.h:
