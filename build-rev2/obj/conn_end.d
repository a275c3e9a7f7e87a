build-rev2/obj/conn_end.o: src/conn_end.c include/conn_end.h
include/conn_end.h:
