# mk/preload.mk - the LD_PRELOAD socksifier; included by the Makefile.
#   build/libringsocks-preload.so  routes a program's connections through a SOCKS proxy
#   build/ringsocks-run            the wrapper: ringsocks-run [--proxy URL] -- CMD ARGS
# The library is built without the sanitizers (a preloaded ASan library needs the runtime loaded
# first); its pure part, src/preload/plcore.c, is unit-tested with them (test_plcore).
# Only libc and libdl: the host program brings nothing else.

# The proxy URL is parsed by socksload's url.c (pure), built into the library too.
PL_SRCS   := $(wildcard src/preload/*.c)
PL_OBJS   := $(PL_SRCS:src/preload/%.c=$(BUILD)/obj/pic/%.o) $(BUILD)/obj/pic/url.o
PL_CFLAGS := -O2 -g -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
             -Wmissing-prototypes -fno-strict-aliasing -pthread -fPIC -fvisibility=hidden \
             -Isrc/preload -Itools/socksload

$(BUILD)/obj/pic/%.o: src/preload/%.c src/preload/plcore.h mk/preload.mk | $(BUILD)/obj/pic
	$(CC) $(PL_CFLAGS) -c -o $@ $<

$(BUILD)/obj/pic/url.o: tools/socksload/url.c tools/socksload/socksload.h mk/preload.mk | $(BUILD)/obj/pic
	$(CC) $(PL_CFLAGS) -c -o $@ $<

$(BUILD)/libringsocks-preload.so: $(PL_OBJS)
	$(CC) -shared -pthread -Wl,-z,defs -o $@ $^ -ldl

$(BUILD)/ringsocks-run: tools/ringsocks-run
	install -m 755 $< $@

# The unit test's object (with the server's flags, sanitizers included).
$(BUILD)/obj/%.o: src/preload/%.c Makefile | $(BUILD)/obj
	$(CC) $(CFLAGS) -Isrc/preload -Itools/socksload -MMD -MP -c -o $@ $<

$(BUILD)/tests/test_plcore: $(BUILD)/obj/socksload/url.o

$(BUILD)/obj/pic:
	mkdir -p $@
