build-rev2/obj/json.o: src/json.c include/json.h
include/json.h:
