# mk/bench.mk - micro-benchmarks; included by the Makefile.
#   make bench-acl   build $(BUILD)/bm_acl and print ns per acl_match() at 10, 1,000 and
#                    10,000 rules (median of BM_ACL_ARGS: repetitions, ms each; default 9 50)
# Standalone C programs until the Google benchmark harness (bench/micro/harness.cc) lands.

BM_ACL_ARGS ?=

.PHONY: bench-acl
$(BUILD)/bm_acl: bench/micro/bm_acl.c src/acl.c src/addr.c $(wildcard include/*.h) | $(BUILD)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c,$^)

bench-acl: $(BUILD)/bm_acl
	$(BUILD)/bm_acl $(BM_ACL_ARGS)
