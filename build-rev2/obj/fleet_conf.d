build-rev2/obj/fleet_conf.o: src/fleet_conf.c include/fleet_conf.h
include/fleet_conf.h:
