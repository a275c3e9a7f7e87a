build-review-san/obj/users.o: src/users.c include/users.h include/acct.h \
 include/lim.h include/egress.h include/addr.h include/lim.h
include/users.h:
include/acct.h:
include/lim.h:
include/egress.h:
include/addr.h:
include/lim.h:
