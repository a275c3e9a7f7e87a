# mk/install.mk - installation; included by the Makefile.
#   make install          build, then install (the socksifier: bin/ringsocks-run and
#                         lib/ringsocks/libringsocks-preload.so) under $(DESTDIR)$(PREFIX) (PREFIX defaults to
#                         /usr/local), plus /etc/ringsocks/ringsocks.conf (only when absent),
#                         /etc/logrotate.d/ringsocks (only when absent) and the systemd unit
#   make uninstall        remove what install put there; /etc/ringsocks is left alone
#   make install-check    install into a fresh temporary DESTDIR, list the tree and validate it
#                         (modes, unit paths, config check, man pages, re-install keeps the
#                         operator's config, uninstall leaves only /etc/ringsocks); last line
#                         "PASS install-check: ..." or "FAIL install-check: ...", non-zero on
#                         failure
# Packagers: make install PREFIX=/usr DESTDIR=$PWD/debian/tmp
# The configuration always lives in $(DESTDIR)/etc/ringsocks (systemd's ConfigurationDirectory=
# and the unit's -c path say so), whatever PREFIX is.

PREFIX  ?= /usr/local
DESTDIR ?=
INSTALL ?= install

RS_SBINDIR := $(PREFIX)/sbin
RS_BINDIR  := $(PREFIX)/bin
RS_LIBDIR  := $(PREFIX)/lib/ringsocks
RS_MANDIR  := $(PREFIX)/share/man
RS_DOCDIR  := $(PREFIX)/share/doc/ringsocks
RS_ETCDIR  := /etc/ringsocks
RS_UNITDIR ?= /lib/systemd/system
RS_LOGROTATE := /etc/logrotate.d/ringsocks

RS_MANPAGES := docs/ringsocks.8 docs/ringsocksctl.8 docs/ringsocks.conf.5
RS_EXAMPLES := conf/ringsocks.conf conf/egress.conf conf/fleet.conf conf/transparent.conf \
               conf/transparent.nft conf/chain.conf conf/gssapi.conf conf/faults.conf
RS_DOCS      = $(wildcard docs/*.md)

# The files in the repository name the default paths (/usr/local/...); installing rewrites
# them for PREFIX. '|' is the sed delimiter, so PREFIX must not contain one.
RS_SED := sed -e 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' -e 's|/usr/local/share/|$(PREFIX)/share/|g'
RS_GEN := $(BUILD)/install
# install-check runs make again on the same top-level makefile.
RS_TOP_MAKEFILE := $(firstword $(MAKEFILE_LIST))

.PHONY: install uninstall install-check

install: $(BUILD)/ringsocks $(BUILD)/ringsocksctl $(BUILD)/libringsocks-preload.so $(BUILD)/ringsocks-run \
         $(RS_MANPAGES) $(RS_EXAMPLES) conf/ringsocks.service \
         conf/logrotate.d/ringsocks
	@case '$(PREFIX)' in /*) ;; *) echo "install: PREFIX must be an absolute path, not '$(PREFIX)'" >&2; exit 2 ;; esac
	mkdir -p $(RS_GEN)
	$(RS_SED) conf/ringsocks.service > $(RS_GEN)/ringsocks.service
	$(RS_SED) docs/ringsocks.8 > $(RS_GEN)/ringsocks.8
	$(RS_SED) docs/ringsocksctl.8 > $(RS_GEN)/ringsocksctl.8
	$(RS_SED) docs/ringsocks.conf.5 > $(RS_GEN)/ringsocks.conf.5
	$(INSTALL) -D -m 755 $(BUILD)/ringsocks $(DESTDIR)$(RS_SBINDIR)/ringsocks
	$(INSTALL) -D -m 755 $(BUILD)/ringsocksctl $(DESTDIR)$(RS_SBINDIR)/ringsocksctl
	@# ringsocks-run finds the library in ../lib/ringsocks/ from itself.
	$(INSTALL) -D -m 755 $(BUILD)/ringsocks-run $(DESTDIR)$(RS_BINDIR)/ringsocks-run
	$(INSTALL) -D -m 644 $(BUILD)/libringsocks-preload.so $(DESTDIR)$(RS_LIBDIR)/libringsocks-preload.so
	$(INSTALL) -D -m 644 $(RS_GEN)/ringsocks.8 $(DESTDIR)$(RS_MANDIR)/man8/ringsocks.8
	$(INSTALL) -D -m 644 $(RS_GEN)/ringsocksctl.8 $(DESTDIR)$(RS_MANDIR)/man8/ringsocksctl.8
	$(INSTALL) -D -m 644 $(RS_GEN)/ringsocks.conf.5 $(DESTDIR)$(RS_MANDIR)/man5/ringsocks.conf.5
	$(INSTALL) -D -m 644 -t $(DESTDIR)$(RS_DOCDIR)/examples $(RS_EXAMPLES)
	$(INSTALL) -D -m 644 -t $(DESTDIR)$(RS_DOCDIR) $(RS_DOCS)
	$(INSTALL) -D -m 644 $(RS_GEN)/ringsocks.service $(DESTDIR)$(RS_UNITDIR)/ringsocks.service
	@# Never overwrite an operator's files in /etc.
	@if [ -e $(DESTDIR)$(RS_ETCDIR)/ringsocks.conf ]; then \
	    echo "kept $(DESTDIR)$(RS_ETCDIR)/ringsocks.conf (exists; the shipped one is in $(RS_DOCDIR)/examples/)"; \
	else \
	    echo "$(INSTALL) -D -m 644 conf/ringsocks.conf $(DESTDIR)$(RS_ETCDIR)/ringsocks.conf"; \
	    $(INSTALL) -D -m 644 conf/ringsocks.conf $(DESTDIR)$(RS_ETCDIR)/ringsocks.conf; \
	fi
	@if [ -e $(DESTDIR)$(RS_LOGROTATE) ]; then \
	    echo "kept $(DESTDIR)$(RS_LOGROTATE) (exists)"; \
	else \
	    echo "$(INSTALL) -D -m 644 conf/logrotate.d/ringsocks $(DESTDIR)$(RS_LOGROTATE)"; \
	    $(INSTALL) -D -m 644 conf/logrotate.d/ringsocks $(DESTDIR)$(RS_LOGROTATE); \
	fi
	@if [ -z '$(DESTDIR)' ]; then \
	    echo "next: systemctl daemon-reload && systemctl enable --now ringsocks (see docs/operations.md, Install)"; \
	fi

# The logrotate file is removed only while it is still the shipped one.
uninstall:
	rm -f $(DESTDIR)$(RS_SBINDIR)/ringsocks $(DESTDIR)$(RS_SBINDIR)/ringsocksctl
	rm -f $(DESTDIR)$(RS_BINDIR)/ringsocks-run $(DESTDIR)$(RS_LIBDIR)/libringsocks-preload.so
	rmdir $(DESTDIR)$(RS_LIBDIR) 2>/dev/null || true
	rm -f $(DESTDIR)$(RS_MANDIR)/man8/ringsocks.8 $(DESTDIR)$(RS_MANDIR)/man8/ringsocksctl.8 \
	    $(DESTDIR)$(RS_MANDIR)/man5/ringsocks.conf.5
	rm -f $(addprefix $(DESTDIR)$(RS_DOCDIR)/examples/,$(notdir $(RS_EXAMPLES)))
	rm -f $(addprefix $(DESTDIR)$(RS_DOCDIR)/,$(notdir $(RS_DOCS)))
	rmdir $(DESTDIR)$(RS_DOCDIR)/examples $(DESTDIR)$(RS_DOCDIR) 2>/dev/null || true
	rm -f $(DESTDIR)$(RS_UNITDIR)/ringsocks.service
	@if [ -f $(DESTDIR)$(RS_LOGROTATE) ] && cmp -s conf/logrotate.d/ringsocks $(DESTDIR)$(RS_LOGROTATE); then \
	    echo "rm -f $(DESTDIR)$(RS_LOGROTATE)"; rm -f $(DESTDIR)$(RS_LOGROTATE); \
	elif [ -e $(DESTDIR)$(RS_LOGROTATE) ]; then \
	    echo "kept $(DESTDIR)$(RS_LOGROTATE) (changed since install)"; \
	fi
	@echo "kept $(DESTDIR)$(RS_ETCDIR) (configuration and users are the operator's)"

# A sha512-crypt hash (of "check"), so the egress example, which requires a users file,
# can be checked too; its access log goes to the work directory, since -t refuses a log
# directory (/var/log/ringsocks, made by systemd's LogsDirectory=) that does not exist.
RS_CHECK_HASH := $$6$$8OUTMpWNua3Nj16s$$pgM3kMyDp.Lz1Bs6J6P0mUln0h6L7DcQGAvPjrSEd0XR4PYliLKnJV57YTGs6hVfnIcgNs7PF/N8ik1gytnET0

install-check: $(BUILD)/ringsocks $(BUILD)/ringsocksctl $(BUILD)/libringsocks-preload.so $(BUILD)/ringsocks-run
	@set -u; \
	work=$$(mktemp -d "$${TMPDIR:-/tmp}/ringsocks-install.XXXXXX") || exit 2; \
	trap 'rm -rf "$$work"' EXIT; \
	root="$$work/root"; mkdir "$$root"; \
	fail() { echo "FAIL install-check: $$*"; exit 1; }; \
	$(MAKE) -f $(RS_TOP_MAKEFILE) --no-print-directory install DESTDIR="$$root" PREFIX='$(PREFIX)' >"$$work/install.log" 2>&1 \
	    || { cat "$$work/install.log"; fail "make install DESTDIR=$$root exited non-zero"; }; \
	echo "== install tree (DESTDIR=$$root, PREFIX=$(PREFIX))"; \
	(cd "$$root" && find . -mindepth 1 -printf '%M %p\n' | sort -k2); \
	n=0; \
	for spec in \
	    '755 $(RS_SBINDIR)/ringsocks' \
	    '755 $(RS_SBINDIR)/ringsocksctl' \
	    '755 $(RS_BINDIR)/ringsocks-run' \
	    '644 $(RS_LIBDIR)/libringsocks-preload.so' \
	    '644 $(RS_MANDIR)/man8/ringsocks.8' \
	    '644 $(RS_MANDIR)/man8/ringsocksctl.8' \
	    '644 $(RS_MANDIR)/man5/ringsocks.conf.5' \
	    '644 $(RS_DOCDIR)/examples/ringsocks.conf' \
	    '644 $(RS_DOCDIR)/examples/egress.conf' \
	    '644 $(RS_DOCDIR)/examples/fleet.conf' \
	    '644 $(RS_DOCDIR)/examples/transparent.conf' \
	    '644 $(RS_DOCDIR)/examples/transparent.nft' \
	    '644 $(RS_DOCDIR)/examples/chain.conf' \
	    '644 $(RS_DOCDIR)/examples/faults.conf' \
	    $(foreach f,$(notdir $(RS_DOCS)),'644 $(RS_DOCDIR)/$(f)') \
	    '644 $(RS_ETCDIR)/ringsocks.conf' \
	    '644 $(RS_LOGROTATE)' \
	    '644 $(RS_UNITDIR)/ringsocks.service'; do \
	    mode=$${spec%% *}; f="$$root$${spec#* }"; \
	    [ -f "$$f" ] || fail "missing $${spec#* }"; \
	    got=$$(stat -c %a "$$f"); \
	    [ "$$got" = "$$mode" ] || fail "$${spec#* } has mode $$got, expected $$mode"; \
	    n=$$((n + 1)); \
	done; \
	unit="$$root$(RS_UNITDIR)/ringsocks.service"; \
	grep -Fqx 'ExecStart=$(RS_SBINDIR)/ringsocks -c $(RS_ETCDIR)/ringsocks.conf' "$$unit" \
	    || fail "unit: no 'ExecStart=$(RS_SBINDIR)/ringsocks -c $(RS_ETCDIR)/ringsocks.conf'"; \
	grep -Fqx 'ExecStartPre=$(RS_SBINDIR)/ringsocks -t -c $(RS_ETCDIR)/ringsocks.conf' "$$unit" \
	    || fail "unit: no 'ExecStartPre=$(RS_SBINDIR)/ringsocks -t -c $(RS_ETCDIR)/ringsocks.conf'"; \
	if [ '$(PREFIX)' != /usr/local ] && grep -n '/usr/local' "$$unit" "$$root$(RS_MANDIR)"/man*/ringsocks*; then \
	    fail "/usr/local left in the unit or a man page with PREFIX=$(PREFIX)"; \
	fi; \
	bin="$$root$(RS_SBINDIR)/ringsocks"; \
	"$$bin" --version >/dev/null || fail "installed binary: --version failed"; \
	"$$root$(RS_SBINDIR)/ringsocksctl" --help >/dev/null || fail "installed ringsocksctl: --help failed"; \
	RINGSOCKS_PROXY=socks5h://127.0.0.1:9 "$$root$(RS_BINDIR)/ringsocks-run" -- true \
	    || fail "installed ringsocks-run does not find its library in $(RS_LIBDIR)"; \
	"$$bin" -t -c "$$root$(RS_ETCDIR)/ringsocks.conf" >"$$work/t.log" 2>&1 \
	    || { cat "$$work/t.log"; fail "ringsocks -t rejects the installed $(RS_ETCDIR)/ringsocks.conf"; }; \
	printf 'check:%s\n' '$(RS_CHECK_HASH)' >"$$work/users"; \
	"$$bin" -t -c "$$root$(RS_DOCDIR)/examples/egress.conf" --users "$$work/users" \
	    --access-log "$$work/access.log" >"$$work/t.log" 2>&1 \
	    || { cat "$$work/t.log"; fail "ringsocks -t rejects examples/egress.conf"; }; \
	if command -v groff >/dev/null; then \
	    for m in "$$root$(RS_MANDIR)/man8/ringsocks.8" "$$root$(RS_MANDIR)/man8/ringsocksctl.8" \
	        "$$root$(RS_MANDIR)/man5/ringsocks.conf.5"; do \
	        w=$$(groff -man -Tutf8 -ww -z "$$m" 2>&1); \
	        [ -z "$$w" ] || { echo "$$w"; fail "groff warns about $${m#$$root}"; }; \
	    done; \
	else \
	    echo "note: groff not installed, man pages not checked"; \
	fi; \
	echo '# operator edit' >>"$$root$(RS_ETCDIR)/ringsocks.conf"; \
	$(MAKE) -f $(RS_TOP_MAKEFILE) --no-print-directory install DESTDIR="$$root" PREFIX='$(PREFIX)' >"$$work/install.log" 2>&1 \
	    || { cat "$$work/install.log"; fail "second make install exited non-zero"; }; \
	grep -qx '# operator edit' "$$root$(RS_ETCDIR)/ringsocks.conf" \
	    || fail "a second install overwrote $(RS_ETCDIR)/ringsocks.conf"; \
	$(MAKE) -f $(RS_TOP_MAKEFILE) --no-print-directory uninstall DESTDIR="$$root" PREFIX='$(PREFIX)' >"$$work/install.log" 2>&1 \
	    || { cat "$$work/install.log"; fail "make uninstall exited non-zero"; }; \
	left=$$(cd "$$root" && find . -type f ! -path './etc/ringsocks/*' | sort); \
	[ -z "$$left" ] || fail "uninstall left: $$left"; \
	[ -f "$$root$(RS_ETCDIR)/ringsocks.conf" ] || fail "uninstall removed $(RS_ETCDIR)/ringsocks.conf"; \
	echo "PASS install-check: $$n files installed with their modes, unit paths, config check, man pages, config kept on re-install, clean uninstall"
