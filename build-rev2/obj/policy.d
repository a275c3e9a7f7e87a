build-rev2/obj/policy.o: src/policy.c include/policy.h include/addr.h \
 include/lim.h include/lockout.h include/opts.h include/acl.h \
 include/egress.h include/sock.h include/socks5.h include/users.h
include/policy.h:
include/addr.h:
include/lim.h:
include/lockout.h:
include/opts.h:
include/acl.h:
include/egress.h:
include/sock.h:
include/socks5.h:
include/users.h:
