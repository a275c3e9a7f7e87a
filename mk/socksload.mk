# mk/socksload.mk - the SOCKS load generator; included by the Makefile.
#   make $(BUILD)/socksload   build tools/socksload/ into $(BUILD)/socksload
#   make socksload-test       build and run its cmocka tests: URL parser; SOCKS formats and
#                             pattern; the UDP datagram window (udp.c on a fake ring and clock);
#                             the --user template and the source-address counts; the
#                             option values that name a choice (--close, --direction); the
#                             latency histogram (percentiles, merging, max); failures by
#                             (kind, detail): merging and their names (reply codes, errno);
#                             intervals (snapshot differences) and the phase histograms; the
#                             plot's data rows and gnuplot script; socksload's own limits;
#                             the HTTP/1.1 response parser (split at every point); --source
#                             address ranges
#   make socksload-smoke      tests/socksload_smoke.sh against $(BUILD)/ringsocks (ends "N passed, N failed")
# The load generator has no jemalloc and no server objects: only liburing, libm, pthreads.

SOCKSLOAD_SRCS := $(wildcard tools/socksload/*.c)
SOCKSLOAD_OBJS := $(SOCKSLOAD_SRCS:tools/socksload/%.c=$(BUILD)/obj/socksload/%.o)
SOCKSLOAD_CFLAGS := $(filter-out -DHAVE_JEMALLOC -Iinclude -Isrc,$(CFLAGS)) -Itools/socksload

.PHONY: socksload socksload-test socksload-smoke
socksload: $(BUILD)/socksload

$(BUILD)/obj/socksload/%.o: tools/socksload/%.c tools/socksload/socksload.h
	@mkdir -p $(dir $@)
	$(CC) $(SOCKSLOAD_CFLAGS) -c -o $@ $<

$(BUILD)/socksload: $(SOCKSLOAD_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ -luring -lm -pthread

$(BUILD)/tests/test_socksload_url: tests/unit/test_socksload_url.c $(BUILD)/obj/socksload/url.o
	@mkdir -p $(dir $@)
	$(CC) $(SOCKSLOAD_CFLAGS) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/tests/test_socksload_socks: tests/unit/test_socksload_socks.c \
		$(BUILD)/obj/socksload/socks.o $(BUILD)/obj/socksload/pattern.o
	@mkdir -p $(dir $@)
	$(CC) $(SOCKSLOAD_CFLAGS) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/tests/test_socksload_udp: tests/unit/test_socksload_udp.c $(BUILD)/obj/socksload/udp.o \
		$(BUILD)/obj/socksload/socks.o $(BUILD)/obj/socksload/pattern.o \
		$(BUILD)/obj/socksload/url.o
	@mkdir -p $(dir $@)
	$(CC) $(SOCKSLOAD_CFLAGS) $(LDFLAGS) -o $@ $^ -lcmocka -luring

$(BUILD)/tests/test_socksload_sources: tests/unit/test_socksload_sources.c \
		$(BUILD)/obj/socksload/usertpl.o $(BUILD)/obj/socksload/sources.o
	@mkdir -p $(dir $@)
	$(CC) $(SOCKSLOAD_CFLAGS) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/tests/test_socksload_opts: tests/unit/test_socksload_opts.c $(BUILD)/obj/socksload/opts.o
	@mkdir -p $(dir $@)
	$(CC) $(SOCKSLOAD_CFLAGS) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/tests/test_socksload_stats: tests/unit/test_socksload_stats.c $(BUILD)/obj/socksload/stats.o \
		$(BUILD)/obj/socksload/http.o
	@mkdir -p $(dir $@)
	$(CC) $(SOCKSLOAD_CFLAGS) $(LDFLAGS) -o $@ $^ -lcmocka

$(BUILD)/tests/test_socksload_http: tests/unit/test_socksload_http.c $(BUILD)/obj/socksload/http.o \
		tests/unit/http_feed.h
	@mkdir -p $(dir $@)
	$(CC) $(SOCKSLOAD_CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o,$^) -lcmocka

$(BUILD)/tests/test_socksload_srcaddr: tests/unit/test_socksload_srcaddr.c \
		$(BUILD)/obj/socksload/srcaddr.o
	@mkdir -p $(dir $@)
	$(CC) $(SOCKSLOAD_CFLAGS) $(LDFLAGS) -o $@ $^ -lcmocka

socksload-test: $(BUILD)/tests/test_socksload_url $(BUILD)/tests/test_socksload_socks \
		$(BUILD)/tests/test_socksload_udp $(BUILD)/tests/test_socksload_sources \
		$(BUILD)/tests/test_socksload_opts $(BUILD)/tests/test_socksload_stats \
		$(BUILD)/tests/test_socksload_intervals $(BUILD)/tests/test_socksload_plot \
		$(BUILD)/tests/test_socksload_http $(BUILD)/tests/test_socksload_srcaddr
	$(BUILD)/tests/test_socksload_url
	$(BUILD)/tests/test_socksload_socks
	$(BUILD)/tests/test_socksload_udp
	$(BUILD)/tests/test_socksload_sources
	$(BUILD)/tests/test_socksload_opts
	$(BUILD)/tests/test_socksload_stats
	$(BUILD)/tests/test_socksload_intervals
	$(BUILD)/tests/test_socksload_plot
	$(BUILD)/tests/test_socksload_http
	$(BUILD)/tests/test_socksload_srcaddr

socksload-smoke: $(BUILD)/socksload $(BUILD)/ringsocks
	BUILD=$(BUILD) tests/socksload_smoke.sh

$(BUILD)/tests/test_socksload_intervals: tests/unit/test_socksload_intervals.c \
		$(BUILD)/obj/socksload/intervals.o $(BUILD)/obj/socksload/phases.o \
		$(BUILD)/obj/socksload/stats.o $(BUILD)/obj/socksload/http.o
	@mkdir -p $(dir $@)
	$(CC) $(SOCKSLOAD_CFLAGS) $(LDFLAGS) -o $@ $^ -lcmocka -lm

$(BUILD)/tests/test_socksload_plot: tests/unit/test_socksload_plot.c $(BUILD)/obj/socksload/plot.o \
		$(BUILD)/obj/socksload/limits.o
	@mkdir -p $(dir $@)
	$(CC) $(SOCKSLOAD_CFLAGS) $(LDFLAGS) -o $@ $^ -lcmocka -lm
