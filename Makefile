# Makefile -- build, test and install rpc.dracd, dracctl, drac-smtpd and
# drac-pop3d.
#
#   make                      build the programs (swift build -c release)
#   make test                 run scripts/test
#   make install              install programs, man pages, config, init files
#   make uninstall            remove what "make install" installed (not the
#                             config file or the map)
#
# Variables: PREFIX (default /usr/local), DESTDIR (staging root), SBINDIR,
# MANDIR, SYSCONFDIR, SYSTEMDDIR, INITDIR; e.g.
#   make install PREFIX=/usr DESTDIR=/tmp/stage
# Note: the programs look for /etc/drac/drac.conf whatever SYSCONFDIR is;
# use "rpc.dracd -c FILE" when the config file is installed elsewhere (the
# drac-smtpd and drac-pop3d init files pass -c $(SYSCONFDIR)/drac/drac.conf).
#
# "make install" does not build: run "make" first as the normal user, then
# "make install" as root.

SWIFT      ?= swift
SWIFTFLAGS ?=
INSTALL    ?= install
SED        ?= sed

PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
SYSTEMDDIR ?= /lib/systemd/system
INITDIR    ?= /etc/init.d
DESTDIR    ?=

PROGRAMS   = rpc.dracd dracctl drac-smtpd drac-pop3d
MAN5       = docs/drac.conf.5
MAN8       = docs/rpc.dracd.8 docs/dracctl.8 docs/drac-smtpd.8 docs/drac-pop3d.8
# Daemons with a systemd unit (init/NAME.service) and a SysV script (init/NAME.init).
DAEMONS    = rpc.dracd drac-smtpd drac-pop3d

# Where "swift build -c release" puts the binaries (normally .build/release).
# Asked of swift once, and only when a recipe needs it; set BUILDBINDIR=...
# on the command line to skip asking.
BUILDBINDIR ?= $(eval BUILDBINDIR := $$(shell $$(SWIFT) build -c release --show-bin-path 2>/dev/null || echo .build/release))$(BUILDBINDIR)

.PHONY: all build test install install-bin install-man install-conf \
	install-init uninstall check-docs clean

all: build

build:
	$(SWIFT) build -c release $(SWIFTFLAGS) --product rpc.dracd
	$(SWIFT) build -c release $(SWIFTFLAGS) --product dracctl
	$(SWIFT) build -c release $(SWIFTFLAGS) --product drac-smtpd
	$(SWIFT) build -c release $(SWIFTFLAGS) --product drac-pop3d

test:
	scripts/test

install: install-bin install-man install-conf install-init

install-bin:
	@for p in $(PROGRAMS); do \
		test -x "$(BUILDBINDIR)/$$p" || { \
			echo "make: $(BUILDBINDIR)/$$p not found: run 'make' first" >&2; \
			exit 1; }; \
	done
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SBINDIR)
	$(INSTALL) -m 0755 $(addprefix $(BUILDBINDIR)/,$(PROGRAMS)) $(DESTDIR)$(SBINDIR)/

install-man:
	$(INSTALL) -d -m 0755 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 0644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/
	$(INSTALL) -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/

# The config file is installed only if there is none yet: local edits stay.
install-conf:
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/drac
	@if [ -e "$(DESTDIR)$(SYSCONFDIR)/drac/drac.conf" ]; then \
		echo "keeping existing $(DESTDIR)$(SYSCONFDIR)/drac/drac.conf"; \
	else \
		echo "$(INSTALL) -m 0644 init/drac.conf $(DESTDIR)$(SYSCONFDIR)/drac/drac.conf"; \
		$(INSTALL) -m 0644 init/drac.conf "$(DESTDIR)$(SYSCONFDIR)/drac/drac.conf"; \
	fi

# init/NAME.service -> $(SYSTEMDDIR)/NAME.service, init/NAME.init -> $(INITDIR)/NAME,
# with @SBINDIR@ and @SYSCONFDIR@ filled in.
SUBST = $(SED) -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'

install-init:
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SYSTEMDDIR) $(DESTDIR)$(INITDIR)
	@for d in $(DAEMONS); do \
		set -e; \
		echo "install init/$$d.service -> $(DESTDIR)$(SYSTEMDDIR)/$$d.service"; \
		$(SUBST) init/$$d.service > $(DESTDIR)$(SYSTEMDDIR)/$$d.service.tmp; \
		$(INSTALL) -m 0644 $(DESTDIR)$(SYSTEMDDIR)/$$d.service.tmp $(DESTDIR)$(SYSTEMDDIR)/$$d.service; \
		rm -f $(DESTDIR)$(SYSTEMDDIR)/$$d.service.tmp; \
		echo "install init/$$d.init -> $(DESTDIR)$(INITDIR)/$$d"; \
		$(SUBST) init/$$d.init > $(DESTDIR)$(INITDIR)/$$d.tmp; \
		$(INSTALL) -m 0755 $(DESTDIR)$(INITDIR)/$$d.tmp $(DESTDIR)$(INITDIR)/$$d; \
		rm -f $(DESTDIR)$(INITDIR)/$$d.tmp; \
	done

# Leaves $(SYSCONFDIR)/drac (config, allow file, map) in place.
uninstall:
	rm -f $(addprefix $(DESTDIR)$(SBINDIR)/,$(PROGRAMS))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(MAN5)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(MAN8)))
	rm -f $(addprefix $(DESTDIR)$(SYSTEMDDIR)/,$(addsuffix .service,$(DAEMONS)))
	rm -f $(addprefix $(DESTDIR)$(INITDIR)/,$(DAEMONS))
	@echo "left $(DESTDIR)$(SYSCONFDIR)/drac in place (configuration and map)"

# Lint the man pages (needs groff and man-db).
check-docs:
	@for f in $(MAN5) $(MAN8); do \
		echo "checking $$f"; \
		out=$$(groff -man -Tutf8 -ww "$$f" 2>&1 >/dev/null; \
			MANWIDTH=80 man -l "$$f" 2>&1 >/dev/null); \
		if [ -n "$$out" ]; then echo "$$out" >&2; exit 1; fi; \
	done

clean:
	$(SWIFT) package clean
