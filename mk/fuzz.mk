# mk/fuzz.mk - libFuzzer harnesses for the pure parsers; included by the Makefile.
#   make fuzz-build   build $(BUILD)/fuzz/fuzz_X from tests/fuzz/fuzz_X.c and its parsers
#   make fuzz         run each harness until FUZZ_RUNS inputs (default 10,000,000) have run,
#                     on a copy of its seed corpus, FUZZ_SECONDS (default 3600) at most: a
#                     harness short of FUZZ_RUNS by then fails; FUZZ_RUNS=0: FUZZ_SECONDS each;
#                     the stateful ones (FUZZ_STATEFUL: a whole shard per input, hundreds of
#                     inputs a second, not tens of thousands) until FUZZ_STATEFUL_RUNS (1,000,000)
#                     print "PASS fuzz_X: N execs" or "FAIL fuzz_X: ..." per harness
#   make fuzz-smoke   the same for FUZZ_SMOKE_SECONDS (default 10); tests/run.sh runs the
#                     same smoke run and counts it in its summary
# Harnesses are built with clang straight from src/*.c (the fuzzer's coverage instrumentation
# and sanitizers must be in the parser itself, so $(BUILD)/obj is not used), whatever SAN says.

FUZZ_CC            ?= clang
FUZZ_CFLAGS        ?= -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -D_GNU_SOURCE \
                      -Wall -Wextra -Iinclude -Isrc
FUZZ_SECONDS       ?= 3600
FUZZ_RUNS          ?= 10000000
FUZZ_SMOKE_SECONDS ?= 10
# Harnesses run in parallel, at most this many at once (0: one per CPU).
FUZZ_JOBS          ?= 0
FUZZ_STATEFUL      := conn
FUZZ_STATEFUL_RUNS ?= $(if $(filter 0,$(FUZZ_RUNS)),0,1000000)

FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS  := $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)

# The parser sources each harness links; a new harness needs its line here.
$(BUILD)/fuzz/fuzz_socks4: src/socks4.c src/socks5.c src/hostname.c
$(BUILD)/fuzz/fuzz_auth:   src/auth.c
$(BUILD)/fuzz/fuzz_socks5: src/socks5.c src/auth.c src/hostname.c
$(BUILD)/fuzz/fuzz_udp:    src/socks5.c src/hostname.c
$(BUILD)/fuzz/fuzz_proxyproto: src/proxyproto.c
$(BUILD)/fuzz/fuzz_httpconnect: src/httpconnect.c src/socks5.c src/hostname.c
$(BUILD)/fuzz/fuzz_gssframe:   src/gssframe.c
$(BUILD)/fuzz/fuzz_faultspec:  src/faultspec.c
# The parent handshake speaks SOCKS with socksload's client code.
$(BUILD)/fuzz/fuzz_via:        src/via.c src/addr.c tools/socksload/url.c tools/socksload/socks.c
$(BUILD)/fuzz/fuzz_via: FUZZ_EXTRA = -Itools/socksload -lsodium
# socksload's HTTP/1.1 response parser (http mode).
$(BUILD)/fuzz/fuzz_http:       tools/socksload/http.c tests/unit/http_feed.h
$(BUILD)/fuzz/fuzz_http: FUZZ_EXTRA = -Itools/socksload

# The whole connection on the fake ring (tests/unit/fake_ring.h): the shard core and what a
# connection's path reaches (test_oom.c's set, less the password worker and the resolver, faked);
# close() and conn_alloc() wrapped to be watched.
FUZZ_CONN_SRCS := acct acl addr admin auth bind chain clients climap conn egress fault faultspec \
	fleet_conf gssacc gssframe gsshs gssw handshake happy hostname hosts httpconnect lim limit \
	limit_bw lockout options outbound pipe policy proxyproto relay request sock socks4 socks5 \
	transparent udp users via
$(BUILD)/fuzz/fuzz_conn: $(FUZZ_CONN_SRCS:%=src/%.c) tools/socksload/url.c tools/socksload/socks.c \
	tests/unit/fake_ring.h tests/unit/fake_shard.h
$(BUILD)/fuzz/fuzz_conn: FUZZ_EXTRA = -Itools/socksload $(GSS_CFLAGS) -Wl,--wrap=close \
	-Wl,--wrap=conn_alloc -luring -lcrypt -lsodium -lurcu-qsbr -lurcu-cds -lpthread $(GSS_LIBS)

$(FUZZ_BINS): $(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(wildcard include/*.h) \
              | $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(filter src/%.c tools/%.c,$^) $(FUZZ_EXTRA)

$(BUILD)/fuzz:
	mkdir -p $@

.PHONY: fuzz-build fuzz fuzz-smoke
fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	tests/fuzz/run.sh -t $(FUZZ_SECONDS) -n $(FUZZ_RUNS) -j $(FUZZ_JOBS) $(BUILD)/fuzz \
		$(foreach n,$(FUZZ_NAMES),$(n)$(if $(filter $(n),$(FUZZ_STATEFUL)),@$(FUZZ_STATEFUL_RUNS)))

fuzz-smoke: fuzz-build
	tests/fuzz/run.sh -t $(FUZZ_SMOKE_SECONDS) -j $(FUZZ_JOBS) $(BUILD)/fuzz $(FUZZ_NAMES)

# make test: the smoke run comes after deps (which installs clang) and before the suite.
