build-rev2/obj/metrics.o: src/metrics.c include/metrics.h include/lim.h \
 include/version.h include/conn_end.h include/lim.h include/stats.h \
 include/conn_end.h
include/metrics.h:
include/lim.h:
include/version.h:
include/conn_end.h:
include/lim.h:
include/stats.h:
include/conn_end.h:
