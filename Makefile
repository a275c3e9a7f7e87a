# ringsocks - SOCKS proxy on io_uring.
#   make            build build/ringsocks, build/ringsocksctl (the operator's CLI) and
#                   build/socksload (load generator; `socksload serve --socks5` is also the
#                   macro benchmark's no-proxy baseline)
#   make SAN=1      the same with AddressSanitizer + UBSan, in build-san/
#   make run        install what is missing, build, start on conf defaults
#   make test       install what is missing, build, run every test (unit, fuzz smoke, integration)
#   make fuzz       run every libFuzzer harness for FUZZ_SECONDS (default 60)
#   make bench      the macro benchmark, side by side with microsocks and Dante (as root)
#   make bench-micro  Google-benchmark micro-benchmarks (parsers, rules, auth fast path)
#   make bench-acl  rule-matching cost with 10, 1,000 and 10,000 rules
#                   build/libringsocks-preload.so and build/ringsocks-run (the socksifier:
#                   docs/routing.md)
#   make install    PREFIX=/usr/local DESTDIR=: binary, man pages, configs, systemd unit
#   make clean

SAN ?= 0
ifeq ($(SAN),1)
BUILD   ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD   ?= build
SANFLAGS =
endif

CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += $(if $(filter 1,$(SAN)),,-DHAVE_JEMALLOC) -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -fno-strict-aliasing -pthread -Iinclude -Isrc $(SANFLAGS)
LDFLAGS += -pthread $(SANFLAGS)
# jemalloc replaces malloc in the server; the sanitizers bring their own allocator.
ifeq ($(SAN),1)
LIBS     = -luring -lcares -lcrypt -lsodium -lconfig -lurcu-qsbr -lurcu-cds -lhiredis -lseccomp
else
LIBS     = -luring -lcares -lcrypt -lsodium -lconfig -lurcu-qsbr -lurcu-cds -lhiredis -lseccomp -ljemalloc
endif

# MIT Kerberos' GSS-API (src/gssacc.c, issue #15), from Debian's libkrb5-dev.
GSS_CFLAGS := $(shell pkg-config --cflags krb5-gssapi 2>/dev/null)
GSS_LIBS   := $(shell pkg-config --libs krb5-gssapi 2>/dev/null)
LIBS     += $(GSS_LIBS)

SRCS     := $(wildcard src/*.c)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/obj/%.o)
MAIN_OBJ := $(BUILD)/obj/main.o

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

BENCH_BINS := $(BUILD)/socksload

.PHONY: all run test unit integration deps deps-build deps-test clean check-headers format \
	format-check
all: $(BUILD)/ringsocks $(BUILD)/ringsocksctl $(BENCH_BINS) $(BUILD)/libringsocks-preload.so \
	$(BUILD)/ringsocks-run

# -MMD -MP: each object records the headers it read (obj/X.d), so a changed header rebuilds
# what includes it and nothing else. A changed Makefile (flags) rebuilds everything.
$(BUILD)/obj/%.o: src/%.c Makefile | $(BUILD)/obj
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(wildcard $(BUILD)/obj/*.d)

# Upstream chaining (via.c) speaks to parents with socksload's pure SOCKS client code.
VIA_OBJS := $(BUILD)/obj/via.o $(BUILD)/obj/socksload/url.o $(BUILD)/obj/socksload/socks.o
$(BUILD)/obj/via.o: CFLAGS += -Itools/socksload

$(BUILD)/ringsocks: $(MAIN_OBJ) $(LIB_OBJS) $(VIA_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# A unit test links the module it tests (named after it) and cmocka. A header of the tests
# may be named as a prerequisite (it is not linked).
$(BUILD)/tests/test_%: tests/unit/test_%.c $(BUILD)/obj/%.o | $(BUILD)/tests
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter-out %.h,$^) -lcmocka $(LIBS)

# Neighbours a unit test needs besides its module.
$(BUILD)/tests/test_egress: $(VIA_OBJS)
$(BUILD)/tests/test_via: $(BUILD)/obj/addr.o $(BUILD)/obj/socksload/url.o $(BUILD)/obj/socksload/socks.o
$(BUILD)/tests/test_hosts: $(BUILD)/obj/addr.o $(BUILD)/obj/hostname.o
$(BUILD)/tests/test_acl: $(BUILD)/obj/addr.o $(BUILD)/obj/hostname.o
$(BUILD)/tests/test_addrsets: $(BUILD)/obj/acl.o $(BUILD)/obj/addr.o $(BUILD)/obj/hostname.o
$(BUILD)/tests/test_config: $(BUILD)/obj/acl.o $(BUILD)/obj/addr.o $(BUILD)/obj/hostname.o \
	$(BUILD)/obj/admin.o $(BUILD)/obj/options.o $(BUILD)/obj/users.o $(BUILD)/obj/egress.o \
	$(BUILD)/obj/sock.o $(BUILD)/obj/hosts.o $(BUILD)/obj/addrsets.o $(BUILD)/obj/happy.o $(VIA_OBJS)
# The option table, with the policy snapshot its reload classes are checked against.
$(BUILD)/tests/test_options: $(BUILD)/obj/addr.o $(BUILD)/obj/admin.o $(BUILD)/obj/hostname.o \
	$(BUILD)/obj/policy.o $(BUILD)/obj/acl.o $(BUILD)/obj/users.o $(BUILD)/obj/sock.o \
	$(BUILD)/obj/hosts.o $(BUILD)/obj/egress.o $(VIA_OBJS)
$(BUILD)/tests/test_policy: $(BUILD)/obj/addr.o $(BUILD)/obj/admin.o $(BUILD)/obj/hostname.o \
	$(BUILD)/obj/options.o $(BUILD)/obj/acl.o $(BUILD)/obj/users.o $(BUILD)/obj/sock.o \
	$(BUILD)/obj/hosts.o $(BUILD)/obj/egress.o $(VIA_OBJS)
$(BUILD)/tests/test_socks5: $(BUILD)/obj/hostname.o
$(BUILD)/tests/test_admin: $(BUILD)/obj/hostname.o
$(BUILD)/tests/test_socks4: $(BUILD)/obj/socks5.o $(BUILD)/obj/hostname.o
$(BUILD)/tests/test_httpconnect: $(BUILD)/obj/socks5.o $(BUILD)/obj/hostname.o
$(BUILD)/tests/test_users: $(BUILD)/obj/egress.o $(BUILD)/obj/acl.o $(BUILD)/obj/addr.o \
	$(BUILD)/obj/hostname.o $(BUILD)/obj/sock.o $(BUILD)/obj/hosts.o $(VIA_OBJS)
$(BUILD)/tests/test_log: $(BUILD)/obj/addr.o $(BUILD)/obj/conn_end.o
$(BUILD)/tests/test_metrics: $(BUILD)/obj/conn_end.o $(BUILD)/obj/lim.o
# Quotas, the state file, accounting lines and the per-user series, over the real registry,
# users table and metrics text.
$(BUILD)/tests/test_acctctl: $(BUILD)/obj/acct.o $(BUILD)/obj/lim.o $(BUILD)/obj/users.o \
	$(BUILD)/obj/egress.o $(BUILD)/obj/acl.o $(BUILD)/obj/addr.o $(BUILD)/obj/hostname.o \
	$(BUILD)/obj/sock.o $(BUILD)/obj/hosts.o $(BUILD)/obj/metrics.o $(BUILD)/obj/conn_end.o \
	$(BUILD)/obj/json.o $(BUILD)/obj/pct.o \
	tests/unit/users_file.h $(VIA_OBJS)
# The client table and the login lockout key addresses with addr_client_key().
$(BUILD)/tests/test_clients: $(BUILD)/obj/addr.o
$(BUILD)/tests/test_upgrade: $(BUILD)/obj/addr.o
$(BUILD)/tests/test_lockout: $(BUILD)/obj/addr.o
# A transparent listener's helpers, on real loopback sockets.
$(BUILD)/tests/test_transparent: $(BUILD)/obj/addr.o tests/unit/sa_text.h
# The password checker with its real crypt(3) worker; ring_sqe() and conn_authed() are faked.
$(BUILD)/tests/test_authq: $(BUILD)/obj/authcache.o $(BUILD)/obj/clients.o $(BUILD)/obj/users.o \
	$(BUILD)/obj/egress.o $(BUILD)/obj/acl.o $(BUILD)/obj/addr.o $(BUILD)/obj/hostname.o \
	$(BUILD)/obj/sock.o $(BUILD)/obj/hosts.o $(VIA_OBJS)
# ring_sqe() on a real ring; io_uring_submit() is wrapped to fail on demand.
$(BUILD)/tests/test_ring: LDFLAGS += -Wl,--wrap=io_uring_submit
# The shard core on a fake ring and shard: tests/unit/fake_ring.h provides ring_sqe(),
# fake_shard.h the slot layer's other neighbours.
CORE_FAKES := tests/unit/fake_ring.h tests/unit/fake_shard.h
# The slot layer with its real client table; close() and shutdown() are wrapped to be counted.
$(BUILD)/tests/test_conn: $(BUILD)/obj/clients.o $(BUILD)/obj/addr.o $(CORE_FAKES) $(VIA_OBJS)
$(BUILD)/tests/test_conn: LDFLAGS += -Wl,--wrap=close,--wrap=shutdown
# The relay phase on real sockets and pipes, with the real slot layer.
$(BUILD)/tests/test_relay: $(BUILD)/obj/pipe.o $(BUILD)/obj/conn.o $(BUILD)/obj/clients.o \
	$(BUILD)/obj/addr.o $(CORE_FAKES) $(VIA_OBJS)
# The request phase with the real slot layer, rules and hosts table; the phases around it
# and the resolver are faked.
$(BUILD)/tests/test_request: $(BUILD)/obj/conn.o $(BUILD)/obj/clients.o $(BUILD)/obj/addr.o \
	$(BUILD)/obj/policy.o $(BUILD)/obj/acl.o $(BUILD)/obj/users.o $(BUILD)/obj/sock.o \
	$(BUILD)/obj/hosts.o $(BUILD)/obj/hostname.o $(BUILD)/obj/socks5.o $(BUILD)/obj/egress.o \
	$(BUILD)/obj/outbound.o $(BUILD)/obj/happy.o $(BUILD)/obj/chain.o $(CORE_FAKES) $(VIA_OBJS)
$(BUILD)/tests/test_request: LDFLAGS += -Wl,--wrap=close
# The control thread's mailbox into a shard and what the shard runs of it, on the real slot
# layer (fake ring and shard); shard_wake() is faked.
$(BUILD)/tests/test_shardcmd: $(BUILD)/obj/conn.o $(BUILD)/obj/clients.o $(BUILD)/obj/addr.o \
	$(BUILD)/obj/json.o $(BUILD)/obj/log.o $(BUILD)/obj/conn_end.o $(BUILD)/obj/pct.o $(CORE_FAKES) \
	$(VIA_OBJS)
# Egress pools, the pick, session names and hashes.
$(BUILD)/tests/test_egress: $(BUILD)/obj/acl.o $(BUILD)/obj/addr.o $(BUILD)/obj/hostname.o \
	$(BUILD)/obj/sock.o $(BUILD)/obj/hosts.o
# The policy snapshot holds the GSS-API acceptor's credential (gssacc.o).
$(foreach t,options policy request,$(eval $(BUILD)/tests/test_$(t): $(BUILD)/obj/gssacc.o))
# ... and reads auth and gss_protection through the option table (options.o).
$(BUILD)/tests/test_request: $(BUILD)/obj/options.o $(BUILD)/obj/admin.o $(BUILD)/obj/fleet_conf.o
# The option table checks a Redis address (fleet_conf.o).
$(foreach t,config options policy,$(eval $(BUILD)/tests/test_$(t): $(BUILD)/obj/fleet_conf.o))
# A fleet's pure parts, and the lease board's stack (acct.o).
$(BUILD)/tests/test_fleet_conf: $(BUILD)/obj/acct.o $(BUILD)/obj/lim.o
# Limits (lim.o) come with every module that parses them (egress, options, users), and the
# users table links its users to their running state (acct.o).
LIM_USERS := config options users authq request egress conn relay metrics shardcmd policy
$(foreach t,$(LIM_USERS),$(eval $(BUILD)/tests/test_$(t): $(BUILD)/obj/lim.o $(BUILD)/obj/acct.o))
# The relay asks the bandwidth buckets (limit_bw.o); a request is admitted by limit.o, which
# takes client addresses' places in the shared map.
$(BUILD)/tests/test_relay: $(BUILD)/obj/limit_bw.o
$(BUILD)/tests/test_request: $(BUILD)/obj/limit.o $(BUILD)/obj/limit_bw.o $(BUILD)/obj/climap.o
# Fault names (faultspec.o): the slot layer writes them in the log line, the config parses
# them, the metrics name them.
$(foreach t,conn relay request shardcmd config metrics acctctl,$(eval $(BUILD)/tests/test_$(t): \
	$(BUILD)/obj/faultspec.o))
# The allocation-failure loop (tests/unit/test_oom.c): one connection at a time through the
# real handshake, request and relay phases on the fake ring, every allocation site failed in
# turn. The server's objects (all but the real ring) go in an archive, so that the linker takes
# only those the connection's path reaches; the allocator is wrapped to be counted and failed.
OOM_OBJS := $(filter-out $(BUILD)/obj/ring.o,$(LIB_OBJS)) $(VIA_OBJS)
OOM_WRAP := malloc calloc realloc reallocarray aligned_alloc strdup strndup free
$(BUILD)/oom.a: $(OOM_OBJS)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/tests/test_oom: tests/unit/test_oom.c $(BUILD)/oom.a $(CORE_FAKES) | $(BUILD)/tests
	$(CC) $(CFLAGS) $(LDFLAGS) $(foreach f,$(OOM_WRAP),-Wl,--wrap=$(f)) -o $@ $< $(BUILD)/oom.a \
		-lcmocka $(LIBS)
# include/udq.h is header-only: no module object, so its own rule (in UNIT_BINS like the rest).
$(BUILD)/tests/test_udq: tests/unit/test_udq.c include/udq.h | $(BUILD)/tests
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -lcmocka

# The GSS-API acceptor's compile flags; its check (tests/integration/cases_krb.py) is a program
# that is both client (gss_init_sec_context) and server (gssacc.o) against the test's own KDC:
# not named test_*, so tests/run.sh does not run it without the realm.
$(BUILD)/obj/gssacc.o: CFLAGS += $(GSS_CFLAGS)
$(BUILD)/tests/gss-pair: tests/tools/gss_pair.c tests/tools/gss_client.h $(BUILD)/obj/gssacc.o $(BUILD)/obj/gssframe.o \
		Makefile | $(BUILD)/tests
	$(CC) $(CFLAGS) $(GSS_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/obj/gssacc.o $(BUILD)/obj/gssframe.o \
		$(GSS_LIBS)

# The GSS-API worker (src/gssw.c) driven for real: the tool is a client (gss_init_sec_context) and a
# shard (a real io_uring, conn_gss() its own) around the worker, against the test's own KDC.
$(BUILD)/tests/gss-pump: tests/tools/gss_pump.c tests/tools/gss_client.h $(BUILD)/obj/gssw.o \
		$(BUILD)/obj/gssacc.o $(BUILD)/obj/gssframe.o $(BUILD)/obj/ring.o Makefile | $(BUILD)/tests
	$(CC) $(CFLAGS) $(GSS_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/obj/gssw.o $(BUILD)/obj/gssacc.o \
		$(BUILD)/obj/gssframe.o $(BUILD)/obj/ring.o -luring $(GSS_LIBS)

# The GSS-API benchmark's load (bench/gss.sh): handshakes by each method, one tunnel per level.
$(BUILD)/tests/gss-load: tests/tools/gss_load.c tests/tools/gss_client.h $(BUILD)/obj/gssframe.o \
		Makefile | $(BUILD)/tests
	$(CC) $(CFLAGS) $(GSS_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/obj/gssframe.o $(GSS_LIBS) -lpthread

# The transparent-listener tests' client (tests/tools/echo_client.c): linked statically, so no
# LD_PRELOAD reaches it; plain flags (the sanitizers do not link statically).
$(BUILD)/tests/echo-client-static: tests/tools/echo_client.c Makefile | $(BUILD)/tests
	$(CC) -O2 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -static -o $@ $<

$(BUILD) $(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

# Every header compiles on its own (it includes what it uses): tests/run.sh counts it.
check-headers:
	@fail=0; for h in include/*.h; do \
		printf '#include "%s"\n' "$${h#include/}" | \
		$(CC) $(CFLAGS) -fsyntax-only -x c - || { echo "FAIL $$h does not compile alone"; fail=1; }; \
	done; [ $$fail = 0 ] && echo "PASS check-headers: $$(ls include/*.h | wc -l) headers compile alone"

# The code format (tools/.clang-format, ../shared/STYLE.md): `make format` rewrites the files,
# `make format-check` (counted by tests/run.sh) names every file that differs and fails.
# clang-format is Debian 12's (14): another version may format the same file differently.
CLANG_FORMAT ?= clang-format
FORMAT_FILES := $(wildcard src/*.c include/*.h tests/unit/*.c tests/unit/*.h tests/fuzz/*.c \
	tests/fuzz/*.h bench/micro/*.c bench/micro/*.h bench/micro/*.cc tools/socksload/*.c \
	tools/socksload/*.h tools/ringsocksctl/*.c tools/ringsocksctl/*.h src/preload/*.c src/preload/*.h tests/tools/*.c)
format:
	$(CLANG_FORMAT) --style=file:tools/.clang-format -i $(FORMAT_FILES)
format-check:
	@fail=0; for f in $(FORMAT_FILES); do \
		$(CLANG_FORMAT) --style=file:tools/.clang-format "$$f" | diff -u "$$f" - >/dev/null || \
			{ echo "FAIL $$f differs from tools/.clang-format (make format)"; fail=1; }; \
	done; [ $$fail = 0 ] && echo "PASS format-check: $(words $(FORMAT_FILES)) files match tools/.clang-format"

deps:
	@tools/install-deps.sh all
deps-build:
	@tools/install-deps.sh build
deps-test:
	@tools/install-deps.sh test

# The shipped configuration: 127.0.0.1:1080, loopback clients only, admin on 127.0.0.1:9180.
# RUN_ARGS adds flags (they override the file), e.g. make run RUN_ARGS="--relay copy".
run: deps-build
	$(MAKE) $(BUILD)/ringsocks
	exec $(BUILD)/ringsocks -c conf/ringsocks.conf $(RUN_ARGS)

# The build before the tests runs one job per CPU (about a minute less per pass on 2 CPUs:
# the fuzz harnesses, each one clang run over its sources, build beside the rest).
TEST_JOBS ?= $(shell nproc)

test: deps-test
	$(MAKE) -j$(TEST_JOBS) all $(UNIT_BINS) $(BUILD)/tests/echo-client-static $(BUILD)/tests/gss-pair \
		$(BUILD)/tests/gss-pump $(BUILD)/tests/gss-load fuzz-build
	BUILD=$(BUILD) SAN=$(SAN) FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) tests/run.sh

clean:
	rm -rf build build-san

include mk/fuzz.mk
include mk/bench.mk
include mk/install.mk
include mk/socksload.mk
include mk/ringsocksctl.mk
include mk/preload.mk
