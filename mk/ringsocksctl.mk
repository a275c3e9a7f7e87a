# mk/ringsocksctl.mk - the operator's CLI; included by the Makefile.
#   make $(BUILD)/ringsocksctl     build tools/ringsocksctl/ (part of `make`)
#   make $(BUILD)/tests/test_usersedit   its users file editor's cmocka tests
# It links the server's own token file reader (admin.o) and users file parser (users.o, with
# what that needs), so a file it writes is one the server reads, and a token file the server
# refuses it refuses too. No jemalloc, no io_uring.

RSCTL_SRCS := $(wildcard tools/ringsocksctl/*.c)
RSCTL_OBJS := $(RSCTL_SRCS:tools/ringsocksctl/%.c=$(BUILD)/obj/ringsocksctl/%.o)
RSCTL_CFLAGS := $(filter-out -DHAVE_JEMALLOC,$(CFLAGS)) -Itools/ringsocksctl
# The server modules it links: the token reader, and the users parser with its neighbours.
RSCTL_SERVER_OBJS := $(addprefix $(BUILD)/obj/,admin.o hostname.o users.o egress.o acl.o addr.o \
	sock.o hosts.o lim.o acct.o) $(VIA_OBJS)

.PHONY: ringsocksctl
ringsocksctl: $(BUILD)/ringsocksctl

$(BUILD)/obj/ringsocksctl/%.o: tools/ringsocksctl/%.c tools/ringsocksctl/usersedit.h Makefile \
		mk/ringsocksctl.mk
	@mkdir -p $(dir $@)
	$(CC) $(RSCTL_CFLAGS) -MMD -MP -c -o $@ $<

-include $(wildcard $(BUILD)/obj/ringsocksctl/*.d)

$(BUILD)/ringsocksctl: $(RSCTL_OBJS) $(RSCTL_SERVER_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ -lconfig -lcrypt -lsodium -lurcu-qsbr

$(BUILD)/tests/test_usersedit: tests/unit/test_usersedit.c $(BUILD)/obj/ringsocksctl/usersedit.o
	@mkdir -p $(dir $@)
	$(CC) $(RSCTL_CFLAGS) $(LDFLAGS) -o $@ $^ -lcmocka
