# mk/bench.mk - benchmarks; included by the Makefile.
#   make bench        the macro benchmark (bench/macro/run.sh, as root): installs what is missing
#                     (tools/install-deps.sh bench), builds, then measures direct, ringsocks
#                     (splice, copy), microsocks and Dante side by side with build/socksload:
#                     throughput, CPU per GB, tunnel rate (and proxy CPU per 1,000 tunnels,
#                     client RST and target closing first), pinned RTT, memory per tunnel,
#                     handshake rates, concurrent tunnels, 100,000 idle tunnels held on this
#                     node (bench/macro/huge.sh) (direct: `socksload serve --socks5`, the
#                     target answering SOCKS5 itself). Report, raw TSV and plots in
#                     bench/results/macro-<stamp>.*, copied to bench/results/latest.md.
#                     Settings through the environment (see bench/macro/run.sh), e.g.
#                     make bench ROUNDS=5, make bench QUICK=1 (a 2-minute check of the suite),
#                     make bench EXTRA_SERVERS="hev=/path/run-hev.sh {PORT}"
#   make bench-micro  build $(BUILD)/bench-micro (Google benchmark, bench/micro/) and run every
#                     micro-benchmark: ns per call of the parsers, encoders, lookups, rule
#                     matching and the credential fast path. BENCH_ARGS replaces the flags
#                     passed to it (default --benchmark_min_time=0.2), e.g.
#                     BENCH_ARGS="--benchmark_filter=socks5 --benchmark_min_time=1"
#   make bench-acl    the acl_match rows only (10, 1,000 and 10,000 rules), same binary
#   make soak         the soak (bench/soak.sh, as root): one ringsocks under every kind of
#                     client at once for SOAK_MINUTES (default 60) with reloads, log reopens
#                     and a drain + restart halfway; RSS, kernel memory, fds, tunnels and shard
#                     stalls every 10 s; pass rules and slopes in bench/results/soak-<stamp>.md
#                     (.tsv, .svg). make test runs a 3-minute one.
#
# harness.cc is the only C++ (g++ and libbenchmark-dev: make deps); the bm_*.c files and the
# modules they drive are compiled with the project's $(CC) $(CFLAGS), the modules through the
# Makefile's own $(BUILD)/obj rule.

CXX            ?= g++
BENCH_CXXFLAGS ?= -O2 -g -std=c++17 -Wall -Wextra -Werror
BENCH_ARGS     ?= --benchmark_min_time=0.2

BM_SRCS        := $(wildcard bench/micro/bm_*.c)
BM_OBJS        := $(BM_SRCS:bench/micro/%.c=$(BUILD)/bench-micro.d/%.o)
# The modules under test: pure code, no ring, no threads.
BM_MODS        := socks5 socks4 auth authcache addr hosts acl hostname egress sock lim
BM_MOD_OBJS    := $(BM_MODS:%=$(BUILD)/obj/%.o)

.PHONY: bench bench-micro bench-acl soak

# Variables given on the command line (make bench ROUNDS=5) reach the script through the
# environment, as make exports them.
bench:
	@tools/install-deps.sh bench
	$(MAKE) $(BUILD)/ringsocks $(BUILD)/socksload
	BUILD=$(BUILD) NO_BUILD=1 bench/macro/run.sh

SOAK_MINUTES ?= 60

soak:
	$(MAKE) $(BUILD)/ringsocks $(BUILD)/socksload
	BUILD=$(BUILD) SOAK_MINUTES=$(SOAK_MINUTES) bench/soak.sh

$(BUILD)/bench-micro.d:
	mkdir -p $@

$(BUILD)/bench-micro.d/%.o: bench/micro/%.c bench/micro/bench.h $(wildcard include/*.h) \
		| $(BUILD)/bench-micro.d
	$(CC) $(CFLAGS) -Ibench/micro -c -o $@ $<

$(BUILD)/bench-micro.d/harness.o: bench/micro/harness.cc bench/micro/bench.h \
		| $(BUILD)/bench-micro.d
	$(CXX) $(BENCH_CXXFLAGS) $(SANFLAGS) -Ibench/micro -c -o $@ $<

$(BUILD)/bench-micro: $(BUILD)/bench-micro.d/harness.o $(BM_OBJS) $(BM_MOD_OBJS)
	$(CXX) $(LDFLAGS) -o $@ $^ -lbenchmark -lpthread -lsodium

# g++ and libbenchmark-dev come with the test set (make test builds the binary too).
bench-micro: deps-test
	$(MAKE) $(BUILD)/bench-micro
	$(BUILD)/bench-micro $(BENCH_ARGS)

bench-acl: deps-test
	$(MAKE) $(BUILD)/bench-micro
	$(BUILD)/bench-micro --benchmark_filter='^acl_match/' $(BENCH_ARGS)
